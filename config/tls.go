package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// TLS is a witness's certificate material. With it set, the admin API,
// the Raft transport and the calls between witnesses take mutual TLS
// only; plaintext is refused on those ports.
type TLS struct {
	// CAFile holds the PEM certificates of the cluster's CA: peers and
	// clients are accepted only with a certificate it signed.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are this witness's certificate (with the
	// identity spiffe://CLUSTER/witness/NAME) and its private key. All
	// three files are read again when they change, without a restart.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// PolicyFile maps client identities to roles (see AccessPolicy); without
	// it only this cluster's witnesses are let in.
	PolicyFile string `yaml:"policy_file"`
}

// Metrics endpoint security (Node.MetricsTLS).
const (
	// MetricsPlain serves /metrics in plaintext on metrics_addr.
	MetricsPlain = "plain"
	// MetricsTLS serves /metrics over TLS with the witness's certificate;
	// a client certificate is optional, and checked against the CA when
	// given.
	MetricsTLS = "tls"
)

// validateSecurity checks tls, insecure and metrics_tls.
func (n *Node) validateSecurity(p *problems) {
	if t := n.TLS; t != nil {
		if n.Insecure {
			p.addf("insecure", "true", ErrConflict, "set tls or insecure: true, not both")
		}
		for _, f := range []struct{ field, v string }{{"tls.ca_file", t.CAFile}, {"tls.cert_file", t.CertFile}, {"tls.key_file", t.KeyFile}} {
			if f.v == "" {
				p.add(f.field, "", ErrRequired)
			}
		}
	}
	switch n.MetricsTLS {
	case "", MetricsPlain:
	case MetricsTLS:
		if n.TLS == nil {
			p.addf("metrics_tls", n.MetricsTLS, ErrConflict, "needs tls: the endpoint uses the witness's certificate")
		}
	default:
		p.addf("metrics_tls", n.MetricsTLS, ErrInvalid, "one of plain, tls")
	}
}

// ErrNoTLS: a node configuration has neither tls nor insecure: true.
var ErrNoTLS = errors.New("is required, or set insecure: true to run without it")

// CheckSecure reports ErrNoTLS, naming the field, when the node would run
// its ports in plaintext without saying insecure: true. witnessd agent
// refuses to start then; witnessd dev and in-process tests do not ask.
func (n *Node) CheckSecure() error {
	if n.TLS == nil && !n.Insecure {
		return Errors{{Field: "tls", Err: ErrNoTLS}}
	}
	return nil
}

// Roles on the admin API, weakest first. Each includes the ones before it.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// Roles lists the roles a policy may name.
var Roles = []string{RoleViewer, RoleOperator, RoleAdmin}

// AccessPolicy maps caller identities to roles: the one source of roles.
//
//	identities:
//	  - identity: spiffe://witness/client/alice
//	    role: admin
//	  - identity: spiffe://witness/client/oncall-*   # a trailing * matches a prefix
//	    role: operator
type AccessPolicy struct {
	Identities []AccessEntry `yaml:"identities"`
}

// AccessEntry grants one role to an identity: a client certificate's URI
// SAN, else its subject's common name.
type AccessEntry struct {
	Identity string `yaml:"identity"`
	Role     string `yaml:"role"`
}

// LoadPolicy reads and validates a policy file. Each problem names the
// file and the field.
func LoadPolicy(path string) (AccessPolicy, error) {
	var pol AccessPolicy
	data, err := os.ReadFile(path)
	if err != nil {
		return pol, Errors{{Field: "tls.policy_file", Value: path, Err: fmt.Errorf("%w: %v", ErrUnreadable, err)}}
	}
	pol, err = ParsePolicy(data)
	if err != nil {
		return pol, fmt.Errorf("%s:\n%w", path, err)
	}
	return pol, nil
}

// ParsePolicy decodes and validates a policy document.
func ParsePolicy(data []byte) (AccessPolicy, error) {
	var pol AccessPolicy
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&pol); err != nil && !errors.Is(err, io.EOF) { // empty grants nothing
		return pol, Errors{{Err: fmt.Errorf("%w: %s", ErrSyntax, err)}}
	}
	var p problems
	for i, e := range pol.Identities {
		f := fmt.Sprintf("identities[%d]", i)
		switch {
		case e.Identity == "":
			p.add(f+".identity", "", ErrRequired)
		case strings.Contains(strings.TrimSuffix(e.Identity, "*"), "*"):
			p.addf(f+".identity", e.Identity, ErrInvalid, "only a trailing * is allowed")
		}
		known := false
		for _, r := range Roles {
			known = known || r == e.Role
		}
		if !known {
			p.addf(f+".role", e.Role, ErrUnknown, "want one of %s", strings.Join(Roles, ", "))
		}
	}
	return pol, p.err()
}
