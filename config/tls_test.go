package config

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSecuritySettings(t *testing.T) {
	n := Default()
	if err := n.CheckSecure(); !errors.Is(err, ErrNoTLS) {
		t.Fatalf("neither tls nor insecure: %v, want ErrNoTLS", err)
	}
	n.Insecure = true
	if err := n.CheckSecure(); err != nil {
		t.Fatalf("insecure: true: %v", err)
	}
	var p problems
	n.TLS = &TLS{CAFile: "ca.pem"}
	n.MetricsTLS = "mtls"
	n.validateSecurity(&p)
	got := map[string]bool{}
	for _, e := range p.list {
		got[e.Field] = true
	}
	for _, f := range []string{"insecure", "tls.cert_file", "tls.key_file", "metrics_tls"} {
		if !got[f] {
			t.Errorf("no problem named %s in %v", f, p.list)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	_, err := ParsePolicy([]byte("identities:\n  - {identity: spiffe://witness/client/a, role: admin}\n  - {identity: spiffe://witness/client/b, role: root}\n  - {identity: 'a*b', role: viewer}\n"))
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 || es[0].Field != "identities[1].role" || !errors.Is(es[0], ErrUnknown) || es[1].Field != "identities[2].identity" {
		t.Fatalf("got %v", err)
	}
	pol, err := ParsePolicy([]byte("identities:\n  - {identity: spiffe://witness/client/ops-*, role: operator}\n"))
	if err != nil || len(pol.Identities) != 1 {
		t.Fatalf("good policy: %v %v", pol, err)
	}
}

func TestLoadKeyring(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "ring.json")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	short := base64.StdEncoding.EncodeToString(make([]byte, 20))
	if _, err := LoadKeyring(write(`["` + NewGossipKey() + `", "` + short + `"]`)); !errors.Is(err, ErrKeyLength) {
		t.Fatalf("a 20-byte key: %v, want ErrKeyLength", err)
	}
	if _, err := LoadKeyring(write(`[]`)); !errors.Is(err, ErrRequired) {
		t.Fatalf("no key: %v, want ErrRequired", err)
	}
	keys, err := LoadKeyring(write(`["` + NewGossipKey() + `"]`))
	if err != nil || len(keys) != 1 || len(keys[0]) != 32 {
		t.Fatalf("good ring: %v %v", keys, err)
	}
}
