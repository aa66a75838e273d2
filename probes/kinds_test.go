package probes

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// verdict is the part of a Result that the kind tests compare.
type verdict struct {
	OK     bool
	Detail string
}

// timeoutFor is the probe timeout of a table case: 300ms where the case
// is the timeout itself, else long enough that a busy machine does not
// turn an answer into a timeout.
func timeoutFor(want verdict) time.Duration {
	if strings.HasPrefix(want.Detail, "timeout after ") {
		return 300 * time.Millisecond
	}
	return 5 * time.Second
}

func check(t *testing.T, spec Spec) Result {
	t.Helper()
	p, err := New(spec)
	if err != nil {
		t.Fatalf("New(%+v): %v", spec, err)
	}
	return p.Check(context.Background())
}

func TestHTTPProbe(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "status: ready") })
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/down", http.StatusFound) })
	mux.HandleFunc("/hang", func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	tests := []struct {
		name string
		spec HTTPSpec
		want verdict
	}{
		{"ok", HTTPSpec{URL: srv.URL + "/ok"}, verdict{true, "status 200"}},
		{"503", HTTPSpec{URL: srv.URL + "/down"}, verdict{false, "status 503"}},
		{"503 accepted by range", HTTPSpec{URL: srv.URL + "/down", StatusMin: 500, StatusMax: 503}, verdict{true, "status 503"}},
		{"redirect not followed", HTTPSpec{URL: srv.URL + "/moved"}, verdict{true, "status 302"}},
		{"redirect outside range", HTTPSpec{URL: srv.URL + "/moved", StatusMax: 299}, verdict{false, "status 302"}},
		{"body contains", HTTPSpec{URL: srv.URL + "/ok", BodyContains: "ready"}, verdict{true, "status 200"}},
		{"body lacks", HTTPSpec{URL: srv.URL + "/ok", BodyContains: "primary"}, verdict{false, `status 200, body lacks "primary"`}},
		{"hang cut at timeout", HTTPSpec{URL: srv.URL + "/hang"}, verdict{false, "timeout after 300ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.spec
			r := check(t, Spec{Kind: KindHTTP, Interval: 10 * time.Second, Timeout: timeoutFor(tt.want), HTTP: &h})
			if diff := cmp.Diff(tt.want, verdict{r.OK, r.Detail}); diff != "" {
				t.Errorf("Check() (-want +got):\n%s", diff)
			}
			if r.Latency <= 0 || r.Latency > 10*time.Second {
				t.Errorf("Check() latency = %v, want within (0, 10s]", r.Latency)
			}
		})
	}
}

func TestHTTPProbeRefused(t *testing.T) {
	addr := closedPort(t)
	r := check(t, Spec{Kind: KindHTTP, HTTP: &HTTPSpec{URL: "http://" + addr + "/"}})
	if r.OK || !strings.Contains(r.Detail, "connection refused") {
		t.Errorf("Check() = %v %q, want failing with connection refused", r.OK, r.Detail)
	}
}

func TestHTTPProbeTLS(t *testing.T) {
	caFile, serverCert := testCA(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serverCert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)

	tests := []struct {
		name       string
		spec       HTTPSpec
		wantOK     bool
		wantDetail string // substring
	}{
		{"ca file", HTTPSpec{URL: srv.URL, CAFile: caFile}, true, "status 200"},
		{"system roots reject the private ca", HTTPSpec{URL: srv.URL}, false, "certificate"},
		{"verification off", HTTPSpec{URL: srv.URL, InsecureSkipVerify: true}, true, "status 200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.spec
			// A TLS handshake under the race detector on a busy machine
			// can take longer than the default 750ms.
			r := check(t, Spec{Kind: KindHTTP, Interval: 10 * time.Second, Timeout: 5 * time.Second, HTTP: &h})
			if r.OK != tt.wantOK || !strings.Contains(r.Detail, tt.wantDetail) {
				t.Errorf("Check() = %v %q, want %v and a detail containing %q", r.OK, r.Detail, tt.wantOK, tt.wantDetail)
			}
		})
	}
}

// testCA writes a fresh self-signed CA to a PEM file and returns the file
// and a server certificate for 127.0.0.1 signed by it.
func testCA(t *testing.T) (string, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "witness test ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key}
}

// closedPort returns a loopback address that had a listener a moment ago.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestTCPProbe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	spec := Spec{Kind: KindTCP, TCP: &TCPSpec{Address: addr}}
	if r := check(t, spec); !r.OK {
		t.Errorf("Check() against a listener = %q, want healthy", r.Detail)
	}
	ln.Close()
	if r := check(t, spec); r.OK || !strings.Contains(r.Detail, "connection refused") {
		t.Errorf("Check() after close = %v %q, want failing with connection refused", r.OK, r.Detail)
	}
}

// startDNS serves a small zone on 127.0.0.1, over UDP and TCP on the same
// port. Over UDP, big.example.test answers truncated.
func startDNS(t *testing.T) string {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		switch {
		case q.Name == "app.example.test." && q.Qtype == dns.TypeA:
			for _, ip := range []string{"127.0.0.10", "127.0.0.11"} {
				rr, _ := dns.NewRR("app.example.test. 30 IN A " + ip)
				m.Answer = append(m.Answer, rr)
			}
		case q.Name == "_witness.app.example.test." && q.Qtype == dns.TypeTXT:
			rr, _ := dns.NewRR(`_witness.app.example.test. 30 IN TXT "token=3 site=east"`)
			m.Answer = append(m.Answer, rr)
		case q.Name == "www.example.test." && q.Qtype == dns.TypeCNAME:
			rr, _ := dns.NewRR("www.example.test. 30 IN CNAME App.Example.Test.")
			m.Answer = append(m.Answer, rr)
		case q.Name == "big.example.test.":
			if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
				m.Truncated = true
				break
			}
			rr, _ := dns.NewRR("big.example.test. 30 IN A 127.0.0.12")
			m.Answer = append(m.Answer, rr)
		case strings.HasSuffix(q.Name, "example.test."):
			// NOERROR, no data
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			if attempt < 10 {
				continue
			}
			t.Fatal(err)
		}
		for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
			started := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(started) }
			go func() { _ = srv.ActivateAndServe() }()
			<-started
			t.Cleanup(func() { _ = srv.Shutdown() })
		}
		return pc.LocalAddr().String()
	}
}

func TestDNSProbe(t *testing.T) {
	server := startDNS(t)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })

	tests := []struct {
		name string
		spec DNSSpec
		want verdict
	}{
		{"any answer", DNSSpec{Server: server, Name: "app.example.test"}, verdict{true, "app.example.test A 127.0.0.10"}},
		{"second answer expected", DNSSpec{Server: server, Name: "app.example.test", Expect: "127.0.0.11"}, verdict{true, "app.example.test A 127.0.0.11"}},
		{"wrong answer", DNSSpec{Server: server, Name: "app.example.test", Expect: "127.0.0.99"},
			verdict{false, "answer 127.0.0.10 127.0.0.11, want 127.0.0.99"}},
		{"txt unquoted", DNSSpec{Server: server, Name: "_witness.app.example.test", Type: "TXT", Expect: "token=3 site=east"},
			verdict{true, `_witness.app.example.test TXT "token=3 site=east"`}},
		{"txt stale token", DNSSpec{Server: server, Name: "_witness.app.example.test", Type: "TXT", Expect: "token=2 site=west"},
			verdict{false, `answer "token=3 site=east", want token=2 site=west`}},
		{"cname without dot or case", DNSSpec{Server: server, Name: "www.example.test", Type: "CNAME", Expect: "app.example.test"},
			verdict{true, "www.example.test CNAME App.Example.Test."}},
		{"no data", DNSSpec{Server: server, Name: "db.example.test", Type: "AAAA"}, verdict{false, "no AAAA answer for db.example.test"}},
		{"nxdomain", DNSSpec{Server: server, Name: "nope.invalid"}, verdict{false, "rcode NXDOMAIN"}},
		{"truncated retried over tcp", DNSSpec{Server: server, Name: "big.example.test", Expect: "127.0.0.12"}, verdict{true, "big.example.test A 127.0.0.12"}},
		{"tcp", DNSSpec{Server: server, Name: "app.example.test", Net: "tcp"}, verdict{true, "app.example.test A 127.0.0.10"}},
		{"silent server", DNSSpec{Server: silent.LocalAddr().String(), Name: "app.example.test"}, verdict{false, "timeout after 300ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.spec
			r := check(t, Spec{Kind: KindDNS, Interval: 10 * time.Second, Timeout: timeoutFor(tt.want), DNS: &d})
			if diff := cmp.Diff(tt.want, verdict{r.OK, r.Detail}); diff != "" {
				t.Errorf("Check() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExecProbe(t *testing.T) {
	tests := []struct {
		name    string
		command string
		args    []string
		env     []string
		want    verdict
	}{
		{"true", "true", nil, nil, verdict{true, "exit 0"}},
		{"false", "false", nil, nil, verdict{false, "exit 1"}},
		{"exit code and output", "sh", []string{"-c", "echo replica lagging >&2; exit 3"}, nil, verdict{false, "exit 3: replica lagging"}},
		{"env", "sh", []string{"-c", `echo "$WITNESS_SITE"`}, []string{"WITNESS_SITE=east"}, verdict{true, "exit 0: east"}},
		{"sleep beyond timeout", "sleep", []string{"10"}, nil, verdict{false, "timeout after 300ms"}},
		{"not found", "/nonexistent/witness-check", nil, nil, verdict{false, `fork/exec /nonexistent/witness-check: no such file or directory`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := check(t, Spec{Kind: KindExec, Timeout: 300 * time.Millisecond, Exec: &ExecSpec{Command: tt.command, Args: tt.args, Env: tt.env}})
			if diff := cmp.Diff(tt.want, verdict{r.OK, r.Detail}); diff != "" {
				t.Errorf("Check() (-want +got):\n%s", diff)
			}
			if r.Latency > 2*time.Second {
				t.Errorf("Check() latency = %v, want the check cut near its 300ms timeout", r.Latency)
			}
		})
	}
}

func TestExecProbeBoundsOutput(t *testing.T) {
	r := check(t, Spec{Kind: KindExec, Exec: &ExecSpec{Command: "sh", Args: []string{"-c", "yes witness | head -c 100000"}, OutputLimit: 1024}})
	want := "exit 0: " + strings.Repeat("witness\n", 128)[:1024] + "… (98976 bytes dropped)"
	if diff := cmp.Diff(want, r.Detail); diff != "" {
		t.Errorf("Check() detail (-want +got):\n%s", diff)
	}
}

func TestExecProbeKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The shell starts a grandchild that holds the output pipe, then waits.
	script := fmt.Sprintf("sleep 30 & echo $! > %s; wait", pidFile)
	r := check(t, Spec{Kind: KindExec, Timeout: 300 * time.Millisecond, Exec: &ExecSpec{Command: "sh", Args: []string{"-c", script}}})
	if diff := cmp.Diff(verdict{false, "timeout after 300ms"}, verdict{r.OK, r.Detail}); diff != "" {
		t.Errorf("Check() (-want +got):\n%s", diff)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// SIGKILL has been sent; wait (bounded) for the kernel to finish it.
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for alive(pid) {
		select {
		case <-deadline.C:
			t.Fatalf("grandchild %d still running after the check was cut", pid)
		case <-tick.C:
		}
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestExecProbeBackgroundChildDoesNotFail(t *testing.T) {
	r := check(t, Spec{Kind: KindExec, Exec: &ExecSpec{Command: "sh", Args: []string{"-c", "sleep 30 & echo started"}}})
	if diff := cmp.Diff(verdict{true, "exit 0: started"}, verdict{r.OK, r.Detail}); diff != "" {
		t.Errorf("Check() (-want +got):\n%s", diff)
	}
}
