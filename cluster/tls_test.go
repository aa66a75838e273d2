package cluster

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// testPKI is a CA in a directory, and the certificates it signs.
type testPKI struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &testPKI{t: t, dir: t.TempDir(), cert: cert, key: key}
	writePEM(t, filepath.Join(p.dir, "ca.pem"), "CERTIFICATE", der, 0o644)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte, mode os.FileMode) {
	t.Helper()
	// A rename, as an operator's tooling would, so a reader never sees
	// half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type certSpec struct {
	id        string
	usages    []x509.ExtKeyUsage
	notBefore time.Time
	notAfter  time.Time
}

var serialN struct {
	sync.Mutex
	n int64
}

// issue writes NAME.pem and NAME-key.pem and returns their paths.
func (p *testPKI) issue(name string, s certSpec) (certFile, keyFile string) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	if s.notBefore.IsZero() {
		s.notBefore = time.Now().Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = time.Now().Add(24 * time.Hour)
	}
	u, _ := url.Parse(s.id)
	serialN.Lock()
	serialN.n++
	sn := big.NewInt(1000 + serialN.n)
	serialN.Unlock()
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: name},
		NotBefore: s.notBefore, NotAfter: s.notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: s.usages, URIs: []*url.URL{u}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	writePEM(p.t, keyFile, "PRIVATE KEY", kder, 0o600)
	writePEM(p.t, certFile, "CERTIFICATE", der, 0o644)
	return certFile, keyFile
}

var bothUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// witness issues the certificate of witness name of cluster "witness"
// (config.Default's).
func (p *testPKI) witness(name string) config.TLS {
	c, k := p.issue(name, certSpec{id: WitnessIdentity("witness", name), usages: bothUsages})
	return config.TLS{CAFile: filepath.Join(p.dir, "ca.pem"), CertFile: c, KeyFile: k}
}

// client returns a real admin client that dials addr with a client
// certificate of identity id, and sees the server's certificate through
// seen, if set.
func (p *testPKI) client(t *testing.T, addr, id string, seen func(*x509.Certificate)) witnessv1.AdminClient {
	t.Helper()
	name := strings.ReplaceAll(strings.TrimPrefix(id, "spiffe://"), "/", "_")
	c, k := p.issue(name, certSpec{id: id, usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	pair, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: "ignored", InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if seen != nil {
				seen(cs.PeerCertificates[0])
			}
			return nil
		}}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return witnessv1.NewAdminClient(conn)
}

func (p *testPKI) policy(entries ...config.AccessEntry) string {
	var b strings.Builder
	b.WriteString("identities:\n")
	for _, e := range entries {
		fmt.Fprintf(&b, "  - {identity: %q, role: %s}\n", e.Identity, e.Role)
	}
	path := filepath.Join(p.dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		p.t.Fatal(err)
	}
	return path
}

var (
	viewerID   = ClientIdentity("witness", "vera")
	operatorID = ClientIdentity("witness", "otto")
	adminID    = ClientIdentity("witness", "ada")
)

// newTLSCluster starts a cluster whose every witness runs mutual TLS with
// certificates of pki and the roles of its policy.
func newTLSCluster(t *testing.T, pki *testPKI, sites ...string) *testCluster {
	t.Helper()
	pol := pki.policy(
		config.AccessEntry{Identity: viewerID, Role: config.RoleViewer},
		config.AccessEntry{Identity: operatorID, Role: config.RoleOperator},
		config.AccessEntry{Identity: adminID, Role: config.RoleAdmin},
	)
	return newTestClusterWith(t, func(i int, o *Options) {
		tl := pki.witness(o.Config.Name)
		tl.PolicyFile = pol
		o.Config.TLS = &tl
	}, sites...)
}

func TestTLSAdminAPI(t *testing.T) {
	pki := newTestPKI(t)
	tc := newTLSCluster(t, pki, "east", "west", "tiebreak")
	tc.leader()
	follower := tc.follower()
	eventually(t, "follower to know the leader's admin address", func() bool { _, a := follower.Leader(); return a != "" })
	addr := follower.AdminAddr()

	t.Run("plaintext client refused", func(t *testing.T) {
		_, err := dial(t, addr).Status(ctx(t), &witnessv1.StatusRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("plaintext Status: %v, want Unavailable", err)
		}
	})
	t.Run("certificate of another CA refused", func(t *testing.T) {
		other := newTestPKI(t)
		_, err := other.client(t, addr, adminID, nil).Status(ctx(t), &witnessv1.StatusRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("Status with another CA's certificate: %v, want Unavailable", err)
		}
	})
	t.Run("admin applies through a follower; the history names it", func(t *testing.T) {
		c := pki.client(t, addr, adminID, nil)
		if _, err := c.ApplyGroups(ctx(t), &witnessv1.ApplyGroupsRequest{Document: []byte(twoGroups), By: "ada@laptop"}); err != nil {
			t.Fatal(err)
		}
		resp, err := c.GetGroup(ctx(t), &witnessv1.GetGroupRequest{Name: "app", Linearizable: true})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := resp.GetGroup().GetStatus().GetHistory()[0].GetBy(), adminID+" (ada@laptop)"; got != want {
			t.Fatalf("history by %q, want %q", got, want)
		}
	})
	t.Run("viewer reads, and may not switch over", func(t *testing.T) {
		c := pki.client(t, addr, viewerID, nil)
		if _, err := c.Status(ctx(t), &witnessv1.StatusRequest{}); err != nil {
			t.Fatalf("viewer Status: %v", err)
		}
		_, err := c.Switchover(ctx(t), &witnessv1.SwitchoverRequest{Group: "app", ToSite: "west"})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("viewer Switchover: %v, want PermissionDenied", err)
		}
	})
	t.Run("operator fails over, and may not apply", func(t *testing.T) {
		c := pki.client(t, addr, operatorID, nil)
		if _, err := c.ApplyGroups(ctx(t), &witnessv1.ApplyGroupsRequest{Document: []byte(twoGroups)}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("operator ApplyGroups: %v, want PermissionDenied", err)
		}
		g, err := c.GetGroup(ctx(t), &witnessv1.GetGroupRequest{Name: "app", Linearizable: true})
		if err != nil {
			t.Fatal(err)
		}
		// The test's probes see no site healthy, so a switchover would be
		// refused as not eligible: the operator fails over instead.
		if _, err := c.Failover(ctx(t), &witnessv1.FailoverRequest{Group: "app", ToSite: "west", Reason: "maintenance", ExpectedToken: g.GetGroup().GetStatus().GetToken()}); err != nil {
			t.Fatalf("operator Failover: %v", err)
		}
		resp, err := c.GetGroup(ctx(t), &witnessv1.GetGroupRequest{Name: "app", Linearizable: true})
		if err != nil {
			t.Fatal(err)
		}
		var by []string
		for _, tr := range resp.GetGroup().GetStatus().GetHistory() {
			if tr.GetKind() == witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER {
				by = append(by, tr.GetBy())
			}
		}
		if len(by) == 0 || !strings.HasPrefix(by[0], operatorID) {
			t.Fatalf("failover transitions by %q, want %s", by, operatorID)
		}
	})
	t.Run("a client may not make the calls between witnesses", func(t *testing.T) {
		c := pki.client(t, addr, adminID, nil)
		_, err := c.RunHook(ctx(t), &witnessv1.RunHookRequest{Group: "app", Hook: "h", Token: 1, Step: "fence", Leader: follower.Name()})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("admin RunHook: %v, want PermissionDenied", err)
		}
		if _, err := c.RenewLease(ctx(t), &witnessv1.RenewLeaseRequest{Node: "east-1", Site: "east"}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("admin RenewLease: %v, want PermissionDenied", err)
		}
		// A certificate that claims to be a witness of another cluster.
		c = pki.client(t, addr, WitnessIdentity("other", "east-1"), nil)
		if _, err := c.ReadIndex(ctx(t), &witnessv1.ReadIndexRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("other cluster's witness ReadIndex: %v, want PermissionDenied", err)
		}
	})
}

// TestTLSCertificateReload replaces a witness's certificate on disk: the
// next handshake presents the new one, without a restart.
func TestTLSCertificateReload(t *testing.T) {
	pki := newTestPKI(t)
	tc := newTLSCluster(t, pki, "east")
	_, n := tc.leader()
	var mu sync.Mutex
	var serials []string
	seen := func(c *x509.Certificate) { mu.Lock(); serials = append(serials, c.SerialNumber.String()); mu.Unlock() }

	if _, err := pki.client(t, n.AdminAddr(), viewerID, seen).Status(ctx(t), &witnessv1.StatusRequest{}); err != nil {
		t.Fatal(err)
	}
	pki.witness(n.Name()) // the same files, a new certificate
	if _, err := pki.client(t, n.AdminAddr(), viewerID, seen).Status(ctx(t), &witnessv1.StatusRequest{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(serials) != 2 || serials[0] == serials[1] {
		t.Fatalf("server certificates seen: %v, want two different", serials)
	}
	cur, err := tls.LoadX509KeyPair(n.cfg.TLS.CertFile, n.cfg.TLS.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Leaf.SerialNumber.String() != serials[1] {
		t.Fatalf("second handshake showed %s, the file holds %s", serials[1], cur.Leaf.SerialNumber)
	}
}

// TestTLSRaftRefusesNonWitness: Raft's port takes neither plaintext nor a
// client certificate; it takes a witness's.
func TestTLSRaftRefusesNonWitness(t *testing.T) {
	pki := newTestPKI(t)
	tc := newTLSCluster(t, pki, "east")
	tc.leader()
	raftAddr := tc.nodes[0].cfg.RaftAddr
	handshake := func(id string, usages []x509.ExtKeyUsage) error {
		c, k := pki.issue("raft-client", certSpec{id: id, usages: usages})
		pair, err := tls.LoadX509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", raftAddr, &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true})
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3: the server's verdict on the client arrives with the
		// first read.
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return nil // accepted: Raft waits for a request
		}
		return err
	}
	if err := handshake(WitnessIdentity("witness", "west-9"), bothUsages); err != nil {
		t.Fatalf("a witness certificate refused by Raft: %v", err)
	}
	if err := handshake(adminID, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}); err == nil {
		t.Fatal("a client certificate accepted by Raft")
	}
	conn, err := net.DialTimeout("tcp", raftAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte{0, 1, 2, 3, 4, 5, 6, 7}) // a plaintext Raft request's first bytes
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("plaintext Raft connection answered")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("plaintext Raft connection left open")
	}
}

// TestTLSBadCertificates: each bad certificate is refused at start,
// naming the field.
func TestTLSBadCertificates(t *testing.T) {
	pki := newTestPKI(t)
	hour := time.Hour
	for _, tt := range []struct {
		name string
		spec certSpec
	}{
		{"expired", certSpec{id: WitnessIdentity("witness", "east-1"), usages: bothUsages, notBefore: time.Now().Add(-3 * hour), notAfter: time.Now().Add(-hour)}},
		{"not yet valid", certSpec{id: WitnessIdentity("witness", "east-1"), usages: bothUsages, notBefore: time.Now().Add(hour), notAfter: time.Now().Add(3 * hour)}},
		{"client only", certSpec{id: WitnessIdentity("witness", "east-1"), usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}},
		{"another witness", certSpec{id: WitnessIdentity("witness", "west-1"), usages: bothUsages}},
		{"another cluster", certSpec{id: WitnessIdentity("other", "east-1"), usages: bothUsages}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, k := pki.issue("bad", tt.spec)
			_, err := loadTLSFiles(config.TLS{CAFile: filepath.Join(pki.dir, "ca.pem"), CertFile: c, KeyFile: k}, "witness", "east-1", slog.New(slog.DiscardHandler))
			var ve config.Errors
			if !errors.As(err, &ve) || ve[0].Field != "tls.cert_file" || !errors.Is(err, ErrCertificate) {
				t.Fatalf("got %v, want an ErrCertificate of tls.cert_file", err)
			}
		})
	}
	t.Run("world-readable key warns", func(t *testing.T) {
		tl := pki.witness("east-1")
		if err := os.Chmod(tl.KeyFile, 0o644); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := loadTLSFiles(tl, "witness", "east-1", slog.New(slog.NewTextHandler(&buf, nil))); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "field=tls.key_file") {
			t.Fatalf("no warning naming tls.key_file: %s", buf.String())
		}
	})
	t.Run("a policy naming an unknown role stops the start", func(t *testing.T) {
		cfg := nodeConfig(t, "east-1", "east")
		cfg.InitialVoters = []config.Voter{{Name: "east-1", RaftAddr: cfg.RaftAddr, GossipAddr: cfg.GossipAddr}}
		tl := pki.witness("east-1")
		tl.PolicyFile = pki.policy(config.AccessEntry{Identity: adminID, Role: "root"})
		cfg.TLS = &tl
		n, err := Start(ctx(t), Options{Config: cfg, Logger: testLogger(t)})
		if err == nil {
			n.Close()
			t.Fatal("started with a policy naming role root")
		}
		var ve config.Errors
		if !errors.As(err, &ve) || ve[0].Field != "identities[0].role" || !errors.Is(err, config.ErrUnknown) {
			t.Fatalf("got %v, want identities[0].role unknown", err)
		}
	})
}

// TestLeaderCallsJudgedByTerm: RunHook, DemoteLocal and ReinstateLocal are taken only
// from the certificate of the witness that claims to lead, and judged by
// the term the request carries, not by the receiver's view of the leader.
func TestLeaderCallsJudgedByTerm(t *testing.T) {
	pki := newTestPKI(t)
	tc := newTLSCluster(t, pki, "east", "west", "tiebreak")
	_, leader := tc.leader()
	if err := leader.raft.LeadershipTransfer().Error(); err != nil {
		t.Fatal(err)
	}
	_, leader = tc.leader() // now in a term above the first
	follower := tc.follower()
	eventually(t, "the follower in the leader's term", func() bool { return follower.raft.CurrentTerm() == leader.raft.CurrentTerm() })
	term := leader.raft.CurrentTerm()
	as := func(name string) witnessv1.AdminClient {
		return pki.client(t, follower.AdminAddr(), WitnessIdentity("witness", name), nil)
	}
	hook := func(claimed string, term uint64) *witnessv1.RunHookRequest {
		return &witnessv1.RunHookRequest{Group: "nope", Hook: "h", Token: 1, Step: "fence", Leader: claimed, Term: term}
	}
	for _, tt := range []struct {
		name   string
		caller string
		req    *witnessv1.RunHookRequest
		code   codes.Code
	}{
		{"another witness speaks for the leader", "nobody-1", hook(leader.Name(), term), codes.PermissionDenied},
		{"the leader, of a term since replaced", leader.Name(), hook(leader.Name(), term-1), codes.FailedPrecondition},
		{"another leader in the current term", "nobody-1", hook("nobody-1", term), codes.FailedPrecondition},
		// Past the leader check: the group is unknown (the replica waits
		// for it, then says Unavailable).
		{"the leader in its term", leader.Name(), hook(leader.Name(), term), codes.Unavailable},
		{"a leader of a newer term this witness has not seen", "nobody-1", hook("nobody-1", term+1), codes.Unavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := as(tt.caller).RunHook(ctx(t), tt.req); status.Code(err) != tt.code {
				t.Fatalf("RunHook: %v, want %s", err, tt.code)
			}
		})
	}
	t.Run("demote from a deposed leader's term", func(t *testing.T) {
		_, err := as(leader.Name()).DemoteLocal(ctx(t), &witnessv1.DemoteLocalRequest{Group: "nope", Token: 1, Mode: "fast", Leader: leader.Name(), Term: term - 1})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("DemoteLocal: %v, want FailedPrecondition", err)
		}
	})
	t.Run("reinstate from a deposed leader's term", func(t *testing.T) {
		_, err := as(leader.Name()).ReinstateLocal(ctx(t), &witnessv1.ReinstateLocalRequest{Group: "nope", Token: 1, Leader: leader.Name(), Term: term - 1})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("ReinstateLocal: %v, want FailedPrecondition", err)
		}
	})
	t.Run("reinstate in another witness's name", func(t *testing.T) {
		_, err := as("nobody-1").ReinstateLocal(ctx(t), &witnessv1.ReinstateLocalRequest{Group: "nope", Token: 1, Leader: leader.Name(), Term: term})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("ReinstateLocal: %v, want PermissionDenied", err)
		}
	})
}

// TestMetricsOverTLS: metrics_tls: tls serves /metrics with the witness's
// certificate to a scraper with or without a client certificate, and not
// in plaintext.
func TestMetricsOverTLS(t *testing.T) {
	pki := newTestPKI(t)
	f, err := loadTLSFiles(pki.witness("east-1"), "witness", "east-1", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{tls: f, cfg: config.Node{MetricsTLS: config.MetricsTLS}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(n.metricsListener(lis))
	t.Cleanup(func() { srv.Close() })
	pool := x509.NewCertPool()
	pool.AddCert(pki.cert)
	https := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool, InsecureSkipVerify: true}}} // the test CA names no host
	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := https.Get("https://" + lis.Addr().String() + "/metrics")
	if err != nil {
		t.Fatalf("scrape over TLS without a client certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape over TLS: %s", resp.Status)
	}
	if resp, err := plain.Get("http://" + lis.Addr().String() + "/metrics"); err == nil && resp.StatusCode == http.StatusOK {
		resp.Body.Close()
		t.Fatal("plaintext scrape answered")
	}
}
