package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcpeer "google.golang.org/grpc/peer"

	"github.com/sitewitness/witness/config"
)

// Identities. A witness's certificate carries the URI SAN
// spiffe://CLUSTER/witness/NAME; a client's, spiffe://CLUSTER/client/NAME
// (or any identity its policy names). A peer is judged by its certificate's
// identity and the CA that signed it, not by the address it dials from:
// witnesses dial each other by IP address, and a certificate is not tied
// to one.

// WitnessIdentity is the identity of witness name of cluster.
func WitnessIdentity(cluster, name string) string {
	return (&url.URL{Scheme: "spiffe", Host: cluster, Path: "/witness/" + name}).String()
}

// ClientIdentity is the identity of a client named name of cluster.
func ClientIdentity(cluster, name string) string {
	return (&url.URL{Scheme: "spiffe", Host: cluster, Path: "/client/" + name}).String()
}

// Errors of certificate material.
var (
	// ErrCertificate: a certificate is expired, not yet valid, made for
	// another purpose, of another cluster or witness, or not signed by
	// the CA.
	ErrCertificate = errors.New("certificate refused")
	// ErrNotWitness: a caller of a witness-to-witness call does not hold
	// a certificate of this cluster's witnesses.
	ErrNotWitness = errors.New("not a witness of this cluster")
)

// certIdentity is a certificate's identity: its first URI SAN, else its
// subject's common name.
func certIdentity(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	return c.Subject.CommonName
}

// witnessName returns the witness name of an identity of cluster's
// witnesses.
func witnessName(cluster, id string) (string, bool) {
	prefix := WitnessIdentity(cluster, "")
	name, ok := strings.CutPrefix(id, prefix)
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	return name, true
}

// tlsFiles is a witness's certificate material, read again from its files
// when they change: every handshake first looks at the files' size and
// modification time, as grpc-go's certprovider/pemfile and etcd do. A
// changed file that does not load (half written, a key of another
// certificate) is logged and the last good material stays in use.
type tlsFiles struct {
	cfg     config.TLS
	cluster string
	log     *slog.Logger
	now     func() time.Time

	mu    sync.Mutex
	stamp string // sizes and modification times of the three files
	pool  *x509.CertPool
	cert  *tls.Certificate
}

// loadTLSFiles reads and checks the material of witness name: the
// certificate is valid now, for both server and client authentication,
// signed by the CA and names this witness. The key file should be
// readable by its owner only; a warning says so otherwise.
func loadTLSFiles(cfg config.TLS, cluster, name string, log *slog.Logger) (*tlsFiles, error) {
	f := &tlsFiles{cfg: cfg, cluster: cluster, log: log, now: time.Now}
	stamp, err := f.fileStamp()
	if err != nil {
		return nil, err
	}
	pool, cert, err := f.read()
	if err != nil {
		return nil, err
	}
	if id := certIdentity(cert.Leaf); id != WitnessIdentity(cluster, name) {
		return nil, config.Errors{{Field: "tls.cert_file", Value: cfg.CertFile, Err: fmt.Errorf("%w: its identity is %s, this witness is %s", ErrCertificate, id, WitnessIdentity(cluster, name))}}
	}
	if st, err := os.Stat(cfg.KeyFile); err == nil && st.Mode().Perm()&0o077 != 0 {
		log.Warn("the private key file can be read by others than its owner: chmod 600 it", "field", "tls.key_file", "file", cfg.KeyFile, "mode", st.Mode().Perm().String())
	}
	f.stamp, f.pool, f.cert = stamp, pool, cert
	return f, nil
}

func (f *tlsFiles) fileStamp() (string, error) {
	var b strings.Builder
	for _, x := range []struct{ field, path string }{{"tls.ca_file", f.cfg.CAFile}, {"tls.cert_file", f.cfg.CertFile}, {"tls.key_file", f.cfg.KeyFile}} {
		st, err := os.Stat(x.path)
		if err != nil {
			return "", config.Errors{{Field: x.field, Value: x.path, Err: fmt.Errorf("%w: %v", config.ErrUnreadable, err)}}
		}
		fmt.Fprintf(&b, "%d/%d;", st.Size(), st.ModTime().UnixNano())
	}
	return b.String(), nil
}

// read loads and checks the three files.
func (f *tlsFiles) read() (*x509.CertPool, *tls.Certificate, error) {
	caPEM, err := os.ReadFile(f.cfg.CAFile)
	if err != nil {
		return nil, nil, config.Errors{{Field: "tls.ca_file", Value: f.cfg.CAFile, Err: fmt.Errorf("%w: %v", config.ErrUnreadable, err)}}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, config.Errors{{Field: "tls.ca_file", Value: f.cfg.CAFile, Err: fmt.Errorf("%w: no PEM certificate in it", config.ErrInvalid)}}
	}
	cert, err := tls.LoadX509KeyPair(f.cfg.CertFile, f.cfg.KeyFile)
	if err != nil {
		return nil, nil, config.Errors{{Field: "tls.cert_file", Value: f.cfg.CertFile, Err: fmt.Errorf("%w: with tls.key_file %s: %v", config.ErrInvalid, f.cfg.KeyFile, err)}}
	}
	if err := checkCert(cert.Leaf, pool, f.now(), x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, nil, config.Errors{{Field: "tls.cert_file", Value: f.cfg.CertFile, Err: err}}
	}
	return pool, &cert, nil
}

// checkCert says why c is not a certificate valid at now, signed by a CA
// of pool, for every one of usages.
func checkCert(c *x509.Certificate, pool *x509.CertPool, now time.Time, usages ...x509.ExtKeyUsage) error {
	switch {
	case now.After(c.NotAfter):
		return fmt.Errorf("%w: expired at %s", ErrCertificate, c.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.NotBefore):
		return fmt.Errorf("%w: not valid before %s", ErrCertificate, c.NotBefore.UTC().Format(time.RFC3339))
	}
	for _, u := range usages {
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return fmt.Errorf("%w: for %s: %v", ErrCertificate, usageName(u), err)
		}
	}
	return nil
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "server authentication"
	case x509.ExtKeyUsageClientAuth:
		return "client authentication"
	}
	return fmt.Sprintf("key usage %d", u)
}

// current returns the material, read again when a file changed.
func (f *tlsFiles) current() (*x509.CertPool, *tls.Certificate) {
	f.mu.Lock()
	defer f.mu.Unlock()
	stamp, err := f.fileStamp()
	if err != nil || stamp == f.stamp {
		return f.pool, f.cert
	}
	pool, cert, err := f.read()
	if err != nil {
		f.log.Error("changed certificate files not loaded; the previous ones stay in use", keyErr, err)
		return f.pool, f.cert
	}
	f.log.Info("certificate files loaded again", "cert_file", f.cfg.CertFile, "not_after", cert.Leaf.NotAfter)
	f.stamp, f.pool, f.cert = stamp, pool, cert
	return pool, cert
}

// serverConfig accepts only clients with a certificate the CA signed.
// witnessesOnly narrows that to this cluster's witnesses (Raft). nextProtos
// is the ALPN list (h2 for gRPC).
func (f *tlsFiles) serverConfig(witnessesOnly bool, nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pool, cert := f.current()
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				NextProtos:   nextProtos,
				Certificates: []tls.Certificate{*cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    pool,
			}
			if witnessesOnly {
				c.VerifyConnection = func(cs tls.ConnectionState) error {
					if _, ok := witnessName(f.cluster, certIdentity(cs.PeerCertificates[0])); !ok {
						return fmt.Errorf("%s: %w", certIdentity(cs.PeerCertificates[0]), ErrNotWitness)
					}
					return nil
				}
			}
			return c, nil
		},
	}
}

// clientConfig dials a witness of this cluster: the server's certificate
// must chain to the current CA, serve server authentication and name a
// witness of the cluster. The host name is not checked: witnesses are
// dialled by address, and the identity is in the certificate.
func (f *tlsFiles) clientConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         nextProtos,
		InsecureSkipVerify: true, // verified in VerifyConnection against the current CA
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			_, cert := f.current()
			return cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return f.verifyWitness(cs.PeerCertificates)
		},
	}
}

func (f *tlsFiles) verifyWitness(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return fmt.Errorf("%w: the peer sent none", ErrCertificate)
	}
	pool, _ := f.current()
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: f.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	if _, ok := witnessName(f.cluster, certIdentity(chain[0])); !ok {
		return fmt.Errorf("%s: %w", certIdentity(chain[0]), ErrNotWitness)
	}
	return nil
}

// serverCredentials are the admin server's mutual TLS: any client with a
// certificate of the CA; authorization judges the rest (authz.go).
func (n *Node) serverCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(n.tls.serverConfig(false, "h2"))
}

// dialCredentials returns how this witness dials another's admin API.
func (n *Node) dialCredentials() grpc.DialOption {
	if n.tls == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(n.tls.clientConfig("h2")))
}

// raftLayer wraps Raft's stream layer in mutual TLS when tls is set.
func (n *Node) raftLayer(s *raftStream) raft.StreamLayer {
	if n.tls == nil {
		return s
	}
	return &tlsStream{raftStream: s, server: n.tls.serverConfig(true), client: n.tls.clientConfig()}
}

// loadTLS reads the node's certificate material, when tls is set.
func (n *Node) loadTLS() error {
	t := n.cfg.TLS
	if t == nil {
		n.log.Warn("TLS is off (insecure): the admin API, Raft and the calls between witnesses are plaintext and open to anyone who reaches them")
		return nil
	}
	f, err := loadTLSFiles(*t, n.cfg.Cluster, n.cfg.Name, n.log.With(keyComponent, "tls"))
	if err != nil {
		return err
	}
	n.tls = f
	return nil
}

// tlsStream is Raft's stream layer over mutual TLS: both ends show a
// certificate of a witness of this cluster.
type tlsStream struct {
	*raftStream
	server, client *tls.Config
}

func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.raftStream.Accept()
	if err != nil {
		return nil, err
	}
	return tls.Server(c, s.server), nil
}

func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := s.raftStream.Dial(address, timeout)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(s.conns.ctx, timeout)
	defer cancel()
	tc := tls.Client(c, s.client)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("raft tls %s: %w", address, err)
	}
	return tc, nil
}

// callerIdentity is the identity of the certificate of the caller of an
// admin call, or "" without TLS.
func callerIdentity(ctx context.Context) string {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok {
		return ""
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return ""
	}
	return certIdentity(ti.State.PeerCertificates[0])
}

// metricsListener serves /metrics over TLS when metrics_tls is tls: a
// client certificate is optional (Prometheus may scrape without one) and
// verified against the CA when given.
func (n *Node) metricsListener(lis net.Listener) net.Listener {
	if n.tls == nil || n.cfg.MetricsTLS != config.MetricsTLS {
		return lis
	}
	f := n.tls
	return tls.NewListener(lis, &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pool, cert := f.current()
			return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}, nil
		},
	})
}
