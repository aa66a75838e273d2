package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sitewitness/witness/cluster"
	"github.com/sitewitness/witness/config"
)

// Files that witnessd tls writes in its -dir.
const (
	caCertFile = "ca.pem"
	caKeyFile  = "ca-key.pem"
	policyFile = "policy.yaml"
)

const tlsUsage = `Usage:
  witnessd tls ca create [-dir DIR] [-days N]
  witnessd tls cert create -name NAME -site SITE [-cluster NAME] [-ip IP,...] [-dir DIR]
  witnessd tls cert create -name NAME -client [-role viewer|operator|admin] [-cluster NAME] [-dir DIR]

Writes a CA and certificates for a quick start, as 'consul tls' does. A
witness's certificate has the identity spiffe://CLUSTER/witness/NAME and
serves both ends of mutual TLS; a client's (-client) has
spiffe://CLUSTER/client/NAME. -role adds the client's identity with that role
to DIR/policy.yaml, the policy file witnesses read (tls.policy_file).
`

func tlsCmd(args []string, stdout, stderr io.Writer) error {
	switch {
	case len(args) >= 2 && args[0] == "ca" && args[1] == "create":
		return caCreate(args[2:], stdout, stderr)
	case len(args) >= 2 && args[0] == "cert" && args[1] == "create":
		return certCreate(args[2:], stdout, stderr)
	}
	fmt.Fprint(stderr, tlsUsage)
	return errUsage
}

func caCreate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("witnessd tls ca create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "directory to write ca.pem, ca-key.pem and policy.yaml in")
	days := fs.Int("days", 5*365, "days the CA is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(*dir, caCertFile)); err == nil {
		return fmt.Errorf("%s exists: remove it to make a new CA (every certificate it signed would then be refused)", filepath.Join(*dir, caCertFile))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Witness CA " + now.UTC().Format("2006-01-02T15:04:05Z")},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(0, 0, *days),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	if err := writePair(filepath.Join(*dir, caCertFile), filepath.Join(*dir, caKeyFile), der, key); err != nil {
		return err
	}
	pol := filepath.Join(*dir, policyFile)
	if _, err := os.Stat(pol); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(pol, []byte(examplePolicy), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "wrote %s, %s (keep it secret: it signs certificates) and %s\n", filepath.Join(*dir, caCertFile), filepath.Join(*dir, caKeyFile), pol)
	return nil
}

const examplePolicy = `# Roles on the Witness admin API, by caller identity (a client
# certificate's URI SAN, else its common name). A trailing * matches a prefix.
# viewer: status, groups, watch. operator: also switchover, failover, mode,
# arm/disarm. admin: also apply and delete groups, members, keyring.
# This cluster's witnesses need no entry.
identities: []
`

func certCreate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("witnessd tls cert create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", ".", "directory holding the CA; the certificate and key are written there")
	name := fs.String("name", "", "the witness's name (its config's name), or the client's; required")
	site := fs.String("site", "", "the witness's site; required for a witness certificate")
	clusterName := fs.String("cluster", "witness", "the cluster's name (its config's cluster)")
	client := fs.Bool("client", false, "a client certificate (witnessctl), not a witness's")
	role := fs.String("role", "", "with -client: add the client to policy.yaml with this role: viewer, operator or admin")
	ips := fs.String("ip", "", "comma-separated IP addresses to name in a witness certificate (127.0.0.1 always)")
	dnsNames := fs.String("dns", "", "comma-separated DNS names to name in a witness certificate (localhost and NAME always)")
	days := fs.Int("days", 365, "days the certificate is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var p config.Errors
	if *name == "" {
		p = append(p, &config.ValidationError{Field: "-name", Err: config.ErrRequired})
	}
	if !*client && *site == "" {
		p = append(p, &config.ValidationError{Field: "-site", Err: fmt.Errorf("%w: a witness certificate names its site (or -client)", config.ErrRequired)})
	}
	if *role != "" && !*client {
		p = append(p, &config.ValidationError{Field: "-role", Value: *role, Err: fmt.Errorf("%w: roles are for clients: add -client", config.ErrConflict)})
	}
	if *role != "" && !slices.Contains(config.Roles, *role) {
		p = append(p, &config.ValidationError{Field: "-role", Value: *role, Err: fmt.Errorf("%w: want one of %s", config.ErrUnknown, strings.Join(config.Roles, ", "))})
	}
	if len(p) > 0 {
		return p
	}
	ca, err := tls.LoadX509KeyPair(filepath.Join(*dir, caCertFile), filepath.Join(*dir, caKeyFile))
	if err != nil {
		return fmt.Errorf("load the CA (witnessd tls ca create -dir %s): %w", *dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.AddDate(0, 0, *days),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	var id string
	if *client {
		id = cluster.ClientIdentity(*clusterName, *name)
		tmpl.Subject = pkix.Name{CommonName: *name}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		id = cluster.WitnessIdentity(*clusterName, *name)
		tmpl.Subject = pkix.Name{CommonName: *name, OrganizationalUnit: []string{*site}}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = append([]string{*name, "localhost"}, splitCSV(*dnsNames)...)
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		for _, s := range splitCSV(*ips) {
			ip := net.ParseIP(s)
			if ip == nil {
				return config.Errors{{Field: "-ip", Value: s, Err: config.ErrInvalid}}
			}
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		}
	}
	u, err := url.Parse(id)
	if err != nil {
		return err
	}
	tmpl.URIs = []*url.URL{u}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Leaf, &key.PublicKey, ca.PrivateKey)
	if err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(*dir, *name+".pem"), filepath.Join(*dir, *name+"-key.pem")
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s for %s\n", certPath, keyPath, id)
	if *role != "" {
		pol := filepath.Join(*dir, policyFile)
		if err := addToPolicy(pol, id, *role); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s is %s\n", pol, id, *role)
	}
	return nil
}

// addToPolicy grants role to id in the policy file at path, made if
// missing. The file is checked before and after.
func addToPolicy(path, id, role string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		data = []byte(examplePolicy)
	} else if err != nil {
		return err
	}
	pol, err := config.ParsePolicy(data)
	if err != nil {
		return fmt.Errorf("%s:\n%w", path, err)
	}
	pol.Identities = slices.DeleteFunc(pol.Identities, func(e config.AccessEntry) bool { return e.Identity == id })
	pol.Identities = append(pol.Identities, config.AccessEntry{Identity: id, Role: role})
	out, err := yaml.Marshal(pol)
	if err != nil {
		return err
	}
	head := examplePolicy[:strings.Index(examplePolicy, "identities:")]
	return writeFileAtomic(path, append([]byte(head), out...), 0o644)
}

func splitCSV(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

// writePair writes a certificate (0644) and its key (0600).
func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFileAtomic replaces path by a rename, so that a witness reading it
// again never sees half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
