package probes

import (
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/miekg/dns"
)

// Kind names a probe kind.
type Kind string

// The probe kinds.
const (
	KindHTTP     Kind = "http"
	KindTCP      Kind = "tcp"
	KindDNS      Kind = "dns"
	KindPostgres Kind = "postgres"
	KindExec     Kind = "exec"
)

// Defaults applied by [Spec.WithDefaults].
const (
	DefaultInterval         = time.Second
	DefaultFailThreshold    = 3
	DefaultRecoverThreshold = 2
	DefaultStatusMin        = 200
	DefaultStatusMax        = 399
	DefaultOutputLimit      = 4096
)

// Spec describes one probe. Only the block matching Kind is read.
// Zero values take the defaults of [Spec.WithDefaults].
type Spec struct {
	Kind Kind
	// Interval between two checks; default 1s.
	Interval time.Duration
	// Timeout of one check; default three quarters of Interval. Must be
	// shorter than Interval.
	Timeout time.Duration
	// FailThreshold consecutive failures make a target failing; default 3.
	FailThreshold int
	// RecoverThreshold consecutive successes make a target healthy; default 2.
	RecoverThreshold int

	HTTP     *HTTPSpec
	TCP      *TCPSpec
	DNS      *DNSSpec
	Postgres *PostgresSpec
	Exec     *ExecSpec
}

// HTTPSpec is an http probe: GET URL without following redirects.
type HTTPSpec struct {
	URL string
	// StatusMin and StatusMax bound the healthy status codes, inclusive.
	// Zero StatusMin means 200; zero StatusMax means 399, or StatusMin when
	// StatusMin is above 399.
	StatusMin, StatusMax int
	// BodyContains, when set, must occur in the first 64 KiB of the body.
	BodyContains string
	// CAFile is a PEM file of the CAs that sign the server's certificate;
	// empty means the system roots.
	CAFile string
	// InsecureSkipVerify turns off certificate verification.
	InsecureSkipVerify bool
}

// TCPSpec is a tcp probe: connect to Address (host:port), then close.
type TCPSpec struct {
	Address string
}

// DNSSpec is a dns probe: ask Server for Name/Type.
type DNSSpec struct {
	// Server is host:port or host (port 53).
	Server string
	Name   string
	// Type is an RR type such as "A" or "TXT"; default "A".
	Type string
	// Net is "udp" (default; retried over tcp when truncated) or "tcp".
	Net string
	// Expect, when set, must equal the rdata of one answer of Type, such
	// as "127.0.0.1" or, for TXT, the text with or without quotes. Names
	// compare without case and with or without the final dot.
	Expect string
}

// Database roles reported by, and expected from, a postgres probe.
const (
	RolePrimary = "primary"
	RoleStandby = "standby"
)

// PostgresSpec is a postgres probe: connect with DSN and read the server's
// role and replication state. The probe user needs pg_monitor to see the
// WAL receiver and replication details.
type PostgresSpec struct {
	DSN string
	// Role is RolePrimary, RoleStandby, or empty for either.
	Role string
}

// ExecSpec is an exec probe: run Command with Args; exit code 0 is healthy.
// The process gets its own process group, which is killed at the timeout.
type ExecSpec struct {
	Command string
	Args    []string
	// Env is added to the witness's environment.
	Env []string
	// OutputLimit bounds the captured stdout and stderr; default 4096 bytes.
	OutputLimit int
}

// WithDefaults returns s with zero fields set to their defaults.
func (s Spec) WithDefaults() Spec {
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout == 0 {
		s.Timeout = s.Interval * 3 / 4
	}
	if s.FailThreshold == 0 {
		s.FailThreshold = DefaultFailThreshold
	}
	if s.RecoverThreshold == 0 {
		s.RecoverThreshold = DefaultRecoverThreshold
	}
	if s.HTTP != nil {
		h := *s.HTTP
		if h.StatusMin == 0 {
			h.StatusMin = DefaultStatusMin
		}
		if h.StatusMax == 0 {
			h.StatusMax = max(DefaultStatusMax, h.StatusMin)
		}
		s.HTTP = &h
	}
	if s.DNS != nil {
		d := *s.DNS
		if d.Type == "" {
			d.Type = "A"
		}
		if d.Net == "" {
			d.Net = "udp"
		}
		if d.Server != "" {
			if _, _, err := net.SplitHostPort(d.Server); err != nil {
				d.Server = net.JoinHostPort(strings.Trim(d.Server, "[]"), "53")
			}
		}
		s.DNS = &d
	}
	if s.Exec != nil {
		e := *s.Exec
		if e.OutputLimit == 0 {
			e.OutputLimit = DefaultOutputLimit
		}
		s.Exec = &e
	}
	return s
}

// Validate checks s after defaults. It returns nil or every problem found,
// each a [*ValidationError], joined with errors.Join.
func (s Spec) Validate() error {
	s = s.WithDefaults()
	errs := s.validateTiming()
	switch s.Kind {
	case KindHTTP:
		errs = append(errs, s.validateHTTP()...)
	case KindTCP:
		errs = append(errs, s.validateTCP()...)
	case KindDNS:
		errs = append(errs, s.validateDNS()...)
	case KindPostgres:
		errs = append(errs, s.validatePostgres()...)
	case KindExec:
		errs = append(errs, s.validateExec()...)
	case "":
		errs = append(errs, &ValidationError{Field: "kind", Err: ErrMissing})
	default:
		errs = append(errs, &ValidationError{Field: "kind", Value: string(s.Kind), Err: ErrUnknownKind})
	}
	return errors.Join(errs...)
}

// validateTiming checks the fields every probe has; s has its defaults.
func (s Spec) validateTiming() []error {
	var errs []error
	if s.Interval < 0 {
		errs = append(errs, &ValidationError{Field: "interval", Value: s.Interval, Err: ErrInvalid})
	}
	switch {
	case s.Timeout < 0:
		errs = append(errs, &ValidationError{Field: "timeout", Value: s.Timeout, Err: ErrInvalid})
	case s.Interval > 0 && s.Timeout >= s.Interval:
		errs = append(errs, &ValidationError{Field: "timeout", Value: s.Timeout, Err: ErrTimeoutNotBelowInterval})
	}
	if s.FailThreshold < 1 {
		errs = append(errs, &ValidationError{Field: "fail_threshold", Value: s.FailThreshold, Err: ErrInvalid})
	}
	if s.RecoverThreshold < 1 {
		errs = append(errs, &ValidationError{Field: "recover_threshold", Value: s.RecoverThreshold, Err: ErrInvalid})
	}
	return errs
}

func (s Spec) validateHTTP() []error {
	h := s.HTTP
	if h == nil {
		return []error{&ValidationError{Field: "http", Err: ErrMissing}}
	}
	var errs []error
	if h.URL == "" {
		errs = append(errs, &ValidationError{Field: "http.url", Err: ErrMissing})
	} else if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, &ValidationError{Field: "http.url", Value: h.URL, Err: ErrInvalid})
	}
	if h.StatusMin < 100 || h.StatusMin > 599 {
		errs = append(errs, &ValidationError{Field: "http.status_min", Value: h.StatusMin, Err: ErrInvalid})
	}
	if h.StatusMax < h.StatusMin || h.StatusMax > 599 {
		errs = append(errs, &ValidationError{Field: "http.status_max", Value: h.StatusMax, Err: ErrInvalid})
	}
	return errs
}

func (s Spec) validateTCP() []error {
	t := s.TCP
	if t == nil {
		return []error{&ValidationError{Field: "tcp", Err: ErrMissing}}
	}
	if t.Address == "" {
		return []error{&ValidationError{Field: "tcp.address", Err: ErrMissing}}
	}
	if !validHostPort(t.Address) {
		return []error{&ValidationError{Field: "tcp.address", Value: t.Address, Err: ErrInvalid}}
	}
	return nil
}

func (s Spec) validateDNS() []error {
	d := s.DNS
	if d == nil {
		return []error{&ValidationError{Field: "dns", Err: ErrMissing}}
	}
	var errs []error
	if d.Server == "" {
		errs = append(errs, &ValidationError{Field: "dns.server", Err: ErrMissing})
	} else if !validHostPort(d.Server) {
		errs = append(errs, &ValidationError{Field: "dns.server", Value: d.Server, Err: ErrInvalid})
	}
	if d.Name == "" {
		errs = append(errs, &ValidationError{Field: "dns.name", Err: ErrMissing})
	} else if _, ok := dns.IsDomainName(d.Name); !ok {
		errs = append(errs, &ValidationError{Field: "dns.name", Value: d.Name, Err: ErrInvalid})
	}
	if _, ok := dns.StringToType[strings.ToUpper(d.Type)]; !ok {
		errs = append(errs, &ValidationError{Field: "dns.type", Value: d.Type, Err: ErrInvalid})
	}
	if d.Net != "udp" && d.Net != "tcp" {
		errs = append(errs, &ValidationError{Field: "dns.net", Value: d.Net, Err: ErrInvalid})
	}
	return errs
}

func (s Spec) validatePostgres() []error {
	p := s.Postgres
	if p == nil {
		return []error{&ValidationError{Field: "postgres", Err: ErrMissing}}
	}
	var errs []error
	if p.DSN == "" {
		errs = append(errs, &ValidationError{Field: "postgres.dsn", Err: ErrMissing})
	} else if _, err := pgx.ParseConfig(p.DSN); err != nil {
		// The value is left out: a DSN may hold a password.
		errs = append(errs, &ValidationError{Field: "postgres.dsn", Err: ErrInvalid})
	}
	if p.Role != "" && p.Role != RolePrimary && p.Role != RoleStandby {
		errs = append(errs, &ValidationError{Field: "postgres.role", Value: p.Role, Err: ErrInvalid})
	}
	return errs
}

func (s Spec) validateExec() []error {
	e := s.Exec
	if e == nil {
		return []error{&ValidationError{Field: "exec", Err: ErrMissing}}
	}
	var errs []error
	if e.Command == "" {
		errs = append(errs, &ValidationError{Field: "exec.command", Err: ErrMissing})
	}
	if e.OutputLimit < 0 {
		errs = append(errs, &ValidationError{Field: "exec.output_limit", Value: e.OutputLimit, Err: ErrInvalid})
	}
	return errs
}

func validHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n < 65536
}
