package dns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

// namedStartTimeout bounds how long BIND may take to load the zone.
const namedStartTimeout = 30 * time.Second

// startNamed runs BIND 9 (`named -g`) as a child process on 127.0.0.1 with
// a free port, serving example.test. as a dynamic zone that the TSIG key
// testKey may update. It returns "127.0.0.1:port"; the process is killed at
// cleanup, and its log is printed if the test failed.
func startNamed(t testing.TB) string {
	t.Helper()
	namedPath, err := exec.LookPath("named")
	if err != nil {
		for _, p := range []string{"/usr/sbin/named", "/usr/local/sbin/named"} {
			if _, statErr := os.Stat(p); statErr == nil {
				namedPath, err = p, nil
				break
			}
		}
	}
	if err != nil && os.Getenv("CI") != "" {
		t.Fatal("BIND 9 named is not installed, and CI must test against it: .ci/install-deps installs bind9")
	}
	if err != nil {
		t.Skip("BIND 9 named is not installed (Debian package bind9); the zoneserver tests cover the same switch logic")
	}
	dir := t.TempDir()
	port := freePort(t)
	zoneFile := filepath.Join(dir, "example.test.zone")
	zone := `$TTL 60
@    IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 30
@    IN NS  ns.example.test.
ns   IN A   127.0.0.1
app  IN A   192.0.2.1
`
	conf := fmt.Sprintf(`options {
	directory %[1]q;
	pid-file none;
	listen-on port %[2]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { };
key %[3]q {
	algorithm hmac-sha256;
	secret %[4]q;
};
zone "example.test" {
	type primary;
	file %[5]q;
	allow-update { key %[3]q; };
};
`, dir, port, testKey, testSecret, zoneFile)
	confFile := filepath.Join(dir, "named.conf")
	for path, content := range map[string]string{zoneFile: zone, confFile: conf} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command(namedPath, "-g", "-4", "-n", "1", "-c", confFile)
	cmd.Dir = dir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start named: %v", err)
	}
	var (
		logMu sync.Mutex
		log   bytes.Buffer
		wg    sync.WaitGroup
	)
	running := make(chan struct{})
	wg.Go(func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if !signalled && strings.HasSuffix(sc.Text(), "running") {
				close(running)
				signalled = true
			}
		}
	})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // ends when the process does; cleanup kills it
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		wg.Wait()
		if t.Failed() {
			logMu.Lock()
			t.Logf("named log:\n%s", log.String())
			logMu.Unlock()
		}
	})
	select {
	case <-running:
	case err := <-exited:
		exited <- err
		t.Fatalf("named exited during start: %v", err)
	case <-time.After(namedStartTimeout):
		t.Fatalf("named not running after %v", namedStartTimeout)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// freePort finds a port free for both TCP and UDP on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port for TCP and UDP")
	return 0
}

// TestBIND runs the fenced switch against real BIND 9: the stale writer is
// refused by BIND's own prerequisite check.
func TestBIND(t *testing.T) {
	if testing.Short() {
		t.Skip("starts BIND 9; skipped with -short")
	}
	addr := startNamed(t)
	ctx := t.Context()
	c := newClient(addr)
	r := appRecord()

	if got, err := c.Switch(ctx, r, "east", 1); err != nil || got != OutcomeSwitched {
		t.Fatalf("first switch = %q, %v; want switched", got, err)
	}
	stale, err := c.read(ctx, r) // a leader that will be deposed reads token 1
	if err != nil {
		t.Fatal(err)
	}
	if got, err := newClient(addr).Switch(ctx, r, "west", 2); err != nil || got != OutcomeSwitched {
		t.Fatalf("switch to token 2 = %q, %v; want switched", got, err)
	}

	want, err := r.rrFor("east")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.write(ctx, r, want, "east", 3, stale)
	var rc *RcodeError
	if !errors.Is(err, ErrStaleToken) || !errors.As(err, &rc) || rc.Rcode != mdns.RcodeNXRrset {
		t.Fatalf("stale write error = %v, want ErrStaleToken from BIND's NXRRSET", err)
	}
	wantActual := Actual{HasFence: true, Token: 2, Site: "west", Values: []string{"198.51.100.1"}, TTL: 60}
	if got, err := c.Read(ctx, r); err != nil || !cmp.Equal(wantActual, got) {
		t.Errorf("after stale write: %+v, %v; want %+v (untouched)", got, err, wantActual)
	}

	if _, err := c.Switch(ctx, r, "east", 1); !errors.Is(err, ErrLowerToken) {
		t.Errorf("switch to lower token: %v, want ErrLowerToken", err)
	}
	if got, err := c.Switch(ctx, r, "west", 2); err != nil || got != OutcomeUnchanged {
		t.Errorf("repeat switch = %q, %v; want unchanged", got, err)
	}

	bad := newClient(addr)
	bad.Key = &Key{Name: testKey, Secret: "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA=="}
	if _, err := bad.Switch(ctx, r, "east", 3); !errors.Is(err, ErrTSIG) {
		t.Errorf("wrong secret: %v, want ErrTSIG", err)
	}
	if got, err := c.Read(ctx, r); err != nil || !cmp.Equal(wantActual, got) {
		t.Errorf("at the end: %+v, %v; want %+v", got, err, wantActual)
	}
	if vals, _, err := Resolve(ctx, addr, r.Name, r.Type); err != nil || !cmp.Equal([]string{"198.51.100.1"}, vals) {
		t.Errorf("Resolve = %v, %v; want the west value", vals, err)
	}
}

// BenchmarkSwitchBIND measures one fenced switch (two TCP queries and one
// signed update) against BIND 9 on loopback.
func BenchmarkSwitchBIND(b *testing.B) {
	benchmarkSwitch(b, startNamed(b))
}
