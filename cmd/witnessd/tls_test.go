package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sitewitness/witness/cluster"
	"github.com/sitewitness/witness/config"
)

// TestAgentRefusesWithoutTLS: with neither tls nor insecure: true the
// agent does not start, and says which field.
func TestAgentRefusesWithoutTLS(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "witness.yaml")
	conf := "name: solo\nsite: east\ndata_dir: " + filepath.Join(dir, "data") + "\ninitial_voters:\n  - {name: solo, raft_addr: \"127.0.0.1:7300\", gossip_addr: \"127.0.0.1:7301\"}\n"
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	err := agent(context.Background(), []string{"-config", path}, &logs)
	var ve config.Errors
	if !errors.Is(err, config.ErrNoTLS) || !errors.As(err, &ve) || ve[0].Field != "tls" {
		t.Fatalf("agent without tls: %v, want ErrNoTLS of field tls", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Fatal("data_dir made by an agent that refused to start")
	}
}

// TestTLSCommands: witnessd tls ca create and cert create write a CA, a
// witness certificate for both ends of mutual TLS, and a client
// certificate whose identity the policy file maps to its role.
func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	for _, args := range [][]string{
		{"tls", "ca", "create", "-dir", dir},
		{"tls", "cert", "create", "-dir", dir, "-cluster", "prod", "-name", "east-1", "-site", "east", "-ip", "10.0.1.5"},
		{"tls", "cert", "create", "-dir", dir, "-cluster", "prod", "-name", "alice", "-client", "-role", "operator"},
	} {
		if code := run(args, &out, &errOut); code != 0 {
			t.Fatalf("witnessd %v: exit %d: %s", args, code, errOut.String())
		}
	}
	if code := run([]string{"tls", "ca", "create", "-dir", dir}, &out, &errOut); code == 0 {
		t.Fatal("a second ca create wrote over the CA")
	}
	if code := run([]string{"tls", "cert", "create", "-dir", dir, "-name", "bob", "-role", "admin"}, &out, &errOut); code == 0 {
		t.Fatal("-role without -client accepted")
	}
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
	pool.AppendCertsFromPEM(ca)
	check := func(name, id string, usages ...x509.ExtKeyUsage) {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if got := pair.Leaf.URIs[0].String(); got != id {
			t.Errorf("%s: identity %s, want %s", name, got, id)
		}
		for _, u := range usages {
			if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
				t.Errorf("%s for usage %v: %v", name, u, err)
			}
		}
		if st, _ := os.Stat(filepath.Join(dir, name+"-key.pem")); st.Mode().Perm() != 0o600 {
			t.Errorf("%s's key has mode %v", name, st.Mode().Perm())
		}
	}
	check("east-1", cluster.WitnessIdentity("prod", "east-1"), x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	check("alice", cluster.ClientIdentity("prod", "alice"), x509.ExtKeyUsageClientAuth)
	pol, err := config.LoadPolicy(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pol.Identities) != 1 || pol.Identities[0].Identity != cluster.ClientIdentity("prod", "alice") || pol.Identities[0].Role != config.RoleOperator {
		t.Fatalf("policy: %+v", pol)
	}
	if !strings.Contains(out.String(), "spiffe://prod/client/alice is operator") {
		t.Errorf("output: %s", out.String())
	}
}
