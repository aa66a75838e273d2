package harness

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Every witness runs mutual TLS with certificates that witnessd tls
// writes, as an operator following docs/deploying.md would make them; the
// harness and witnessctl call them with the certificate of the client
// "harness", an admin in the policy file.

// clusterName is the harness's cluster, which the certificates name.
const clusterName = "harness"

// PKIDir is where the CA, the certificates and the policy file are.
func (e *Env) PKIDir() string { return filepath.Join(e.Dir, "pki") }

// makePKI writes a CA, a certificate per witness and the client's.
func (e *Env) makePKI(bin string) error {
	witnessd := filepath.Join(bin, "witnessd")
	run := func(args ...string) error {
		out, err := exec.Command(witnessd, append([]string{"tls"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("witnessd tls %v: %v: %s", args, err, out)
		}
		return nil
	}
	dir := e.PKIDir()
	if err := run("ca", "create", "-dir", dir); err != nil {
		return err
	}
	for _, s := range witnessSites {
		if err := run("cert", "create", "-dir", dir, "-cluster", clusterName, "-name", s+"-1", "-site", s, "-ip", siteAddr[s]); err != nil {
			return err
		}
	}
	if err := run("cert", "create", "-dir", dir, "-cluster", clusterName, "-name", "harness", "-client", "-role", "admin"); err != nil {
		return err
	}
	// One gossip key, made by witnessd keygen, in a keyring file per
	// witness (each writes its own back when the ring changes).
	key, err := exec.Command(witnessd, "keygen").Output()
	if err != nil {
		return fmt.Errorf("witnessd keygen: %w", err)
	}
	for _, s := range witnessSites {
		ring := fmt.Sprintf("[%q]\n", strings.TrimSpace(string(key)))
		if err := os.WriteFile(filepath.Join(dir, s+"-1-keyring.json"), []byte(ring), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// tlsConfig is the node configuration's tls block of witness name.
func (e *Env) tlsConfig(name string) string {
	dir := e.PKIDir()
	return fmt.Sprintf("tls:\n  ca_file: %s\n  cert_file: %s\n  key_file: %s\n  policy_file: %s\n",
		filepath.Join(dir, "ca.pem"), filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"), filepath.Join(dir, "policy.yaml")) +
		fmt.Sprintf("gossip:\n  keyring_file: %s\n", filepath.Join(dir, name+"-keyring.json"))
}

// ClientTLS is the harness client's TLS: its certificate, and the
// witnesses' checked against the CA.
func (e *Env) ClientTLS() (*tls.Config, error) {
	dir := e.PKIDir()
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "harness.pem"), filepath.Join(dir, "harness-key.pem"))
	if err != nil {
		return nil, err
	}
	// The witnesses' certificates name their addresses (-ip), so the
	// ordinary host check applies.
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair}}, nil
}

func (e *Env) clientCreds() (grpc.DialOption, error) {
	cfg, err := e.ClientTLS()
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg)), nil
}

// witnessctlTLS is witnessctl's flags for the harness's client
// certificate.
func (e *Env) witnessctlTLS() []string {
	dir := e.PKIDir()
	return []string{"--ca", filepath.Join(dir, "ca.pem"), "--cert", filepath.Join(dir, "harness.pem"), "--key", filepath.Join(dir, "harness-key.pem")}
}
