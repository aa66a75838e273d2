package harness

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
)

// Zone is the harness's dynamic zone, served by BIND in the dns site.
const (
	Zone       = "example.test."
	RecordName = "app." + Zone
	TSIGName   = "witness"
)

// named is a BIND 9 server with one dynamic zone that takes updates signed
// with the harness's TSIG key.
type named struct {
	proc       *Process
	dir        string
	addr       string
	secret     string
	secretFile string
}

func newNamed(dir, addr string) (*named, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	n := &named{dir: dir, addr: addr, secret: base64.StdEncoding.EncodeToString(raw)}
	n.secretFile = filepath.Join(dir, "tsig.key")
	if err := os.WriteFile(n.secretFile, []byte(n.secret+"\n"), 0o600); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`options {
	directory %q;
	pid-file %q;
	listen-on port 53 { %s; };
	listen-on-v6 { none; };
	recursion no;
	allow-query { any; };
	notify no;
	dnssec-validation no;
};
logging {
	channel all { stderr; severity info; print-time yes; print-category yes; };
	category default { all; };
	category update { all; };
	category update-security { all; };
	category queries { null; };
	category lame-servers { null; };
};
controls { };
key %q {
	algorithm hmac-sha256;
	secret %q;
};
zone %q {
	type primary;
	file "zone.db";
	allow-update { key %q; };
};
`, dir, filepath.Join(dir, "named.pid"), addr, TSIGName, n.secret, Zone, TSIGName)
	zone := fmt.Sprintf(`$TTL 1
@ IN SOA ns1.%[1]s hostmaster.%[1]s ( 1 60 60 3600 1 )
@ IN NS ns1.%[1]s
ns1 IN A %[2]s
`, Zone, addr)
	for name, body := range map[string]string{"named.conf": conf, "zone.db": zone} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	n.proc = &Process{Name: "named", Site: "dns", Log: filepath.Join(dir, "named.log"),
		argv: []string{"/usr/sbin/named", "-g", "-4", "-c", filepath.Join(dir, "named.conf")}}
	return n, nil
}

func (n *named) start() error {
	if err := n.proc.Start(); err != nil {
		return err
	}
	return waitFor(startTimeout, "named to answer", func() error {
		_, err := querySOA(n.addr + ":53")
		if err != nil && !n.proc.Running() {
			return fmt.Errorf("named exited: %s", n.proc.Tail(2000))
		}
		return err
	})
}
