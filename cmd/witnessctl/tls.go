package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// errTLSFlags: --ca, --cert and --key go together.
var errTLSFlags = errors.New("--ca, --cert and --key go together: give all three (or WITNESS_CA, WITNESS_CERT, WITNESS_KEY) or none")

// dialOption is how witnessctl reaches a witness: mutual TLS with the
// client certificate of --cert and --key, the witness's certificate
// checked against --ca; plaintext when none of the three is given.
//
// A witness is dialled by address and its certificate names its identity
// (spiffe://CLUSTER/witness/NAME), not a host: the certificate must chain
// to the CA, serve server authentication and carry a witness identity.
func (g *globals) dialOption() (grpc.DialOption, error) {
	if g.ca == "" && g.cert == "" && g.key == "" {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	if g.ca == "" || g.cert == "" || g.key == "" {
		return nil, errTLSFlags
	}
	caPEM, err := os.ReadFile(g.ca)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--ca %s: no PEM certificate in it", g.ca)
	}
	cert, err := tls.LoadX509KeyPair(g.cert, g.key)
	if err != nil {
		return nil, fmt.Errorf("--cert %s, --key %s: %w", g.cert, g.key, err)
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // verified below, against --ca
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the witness sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("the witness's certificate: %w", err)
			}
			for _, u := range leaf.URIs {
				if u.Scheme == "spiffe" && strings.HasPrefix(u.Path, "/witness/") {
					return nil
				}
			}
			return fmt.Errorf("the certificate of %s is not a witness's", leaf.Subject.CommonName)
		},
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg)), nil
}

func (g *globals) registerTLS(getenv func(string) string) {
	for _, x := range []struct {
		v   *string
		env string
	}{{&g.ca, "WITNESS_CA"}, {&g.cert, "WITNESS_CERT"}, {&g.key, "WITNESS_KEY"}} {
		if *x.v == "" {
			*x.v = getenv(x.env)
		}
	}
}
