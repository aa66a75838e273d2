package probes

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// problem is one field that failed validation and the sentinel it wraps.
type problem struct {
	Field string
	Err   error
}

// problemsOf lists the *ValidationError values joined in err.
func problemsOf(t *testing.T, err error) []problem {
	t.Helper()
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var out []problem
	for _, e := range errs {
		var ve *ValidationError
		if !errors.As(e, &ve) {
			t.Fatalf("error %v is not a *ValidationError", e)
		}
		sentinel := ve.Err
		for _, s := range []error{ErrUnknownKind, ErrMissing, ErrInvalid, ErrTimeoutNotBelowInterval} {
			if errors.Is(e, s) {
				sentinel = s
			}
		}
		out = append(out, problem{ve.Field, sentinel})
	}
	return out
}

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want []problem
	}{
		{"http defaults", Spec{Kind: KindHTTP, HTTP: &HTTPSpec{URL: "http://127.0.0.1:8080/health"}}, nil},
		{"tcp", Spec{Kind: KindTCP, TCP: &TCPSpec{Address: "127.0.0.1:5432"}}, nil},
		{"dns without port", Spec{Kind: KindDNS, DNS: &DNSSpec{Server: "127.0.0.1", Name: "app.example.test", Type: "txt"}}, nil},
		{"postgres", Spec{Kind: KindPostgres, Postgres: &PostgresSpec{DSN: "postgres://u:secret@127.0.0.1:5432/db", Role: RoleStandby}}, nil},
		{"exec", Spec{Kind: KindExec, Exec: &ExecSpec{Command: "true"}}, nil},
		{"missing kind", Spec{}, []problem{{"kind", ErrMissing}}},
		{"unknown kind", Spec{Kind: "icmp"}, []problem{{"kind", ErrUnknownKind}}},
		{"missing block", Spec{Kind: KindHTTP}, []problem{{"http", ErrMissing}}},
		{"missing url", Spec{Kind: KindHTTP, HTTP: &HTTPSpec{}}, []problem{{"http.url", ErrMissing}}},
		{"bad url scheme", Spec{Kind: KindHTTP, HTTP: &HTTPSpec{URL: "ftp://127.0.0.1/"}}, []problem{{"http.url", ErrInvalid}}},
		{"status range inverted", Spec{Kind: KindHTTP, HTTP: &HTTPSpec{URL: "http://127.0.0.1/", StatusMin: 300, StatusMax: 200}}, []problem{{"http.status_max", ErrInvalid}}},
		{"timeout equals interval", Spec{Kind: KindTCP, Interval: time.Second, Timeout: time.Second, TCP: &TCPSpec{Address: "127.0.0.1:1"}},
			[]problem{{"timeout", ErrTimeoutNotBelowInterval}}},
		{"timeout above default interval", Spec{Kind: KindTCP, Timeout: 2 * time.Second, TCP: &TCPSpec{Address: "127.0.0.1:1"}},
			[]problem{{"timeout", ErrTimeoutNotBelowInterval}}},
		{"negative thresholds", Spec{Kind: KindTCP, FailThreshold: -1, RecoverThreshold: -2, TCP: &TCPSpec{Address: "127.0.0.1:1"}},
			[]problem{{"fail_threshold", ErrInvalid}, {"recover_threshold", ErrInvalid}}},
		{"tcp without port", Spec{Kind: KindTCP, TCP: &TCPSpec{Address: "127.0.0.1"}}, []problem{{"tcp.address", ErrInvalid}}},
		{"dns everything wrong", Spec{Kind: KindDNS, DNS: &DNSSpec{Type: "NOPE", Net: "sctp"}},
			[]problem{{"dns.server", ErrMissing}, {"dns.name", ErrMissing}, {"dns.type", ErrInvalid}, {"dns.net", ErrInvalid}}},
		{"postgres bad dsn and role", Spec{Kind: KindPostgres, Postgres: &PostgresSpec{DSN: "postgres://[bad", Role: "leader"}},
			[]problem{{"postgres.dsn", ErrInvalid}, {"postgres.role", ErrInvalid}}},
		{"exec without command", Spec{Kind: KindExec, Exec: &ExecSpec{}}, []problem{{"exec.command", ErrMissing}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problemsOf(t, tt.spec.Validate())
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
				t.Errorf("Validate() problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidationErrorHidesDSN(t *testing.T) {
	err := Spec{Kind: KindPostgres, Postgres: &PostgresSpec{DSN: "postgres://u:hunter2@[bad"}}.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate() = %v, want a *ValidationError", err)
	}
	if ve.Value != nil {
		t.Errorf("ValidationError.Value = %v, want nil so that the password stays out of logs", ve.Value)
	}
}

func TestSpecWithDefaults(t *testing.T) {
	got := Spec{Kind: KindDNS, DNS: &DNSSpec{Server: "127.0.0.1", Name: "a.test"}}.WithDefaults()
	want := Spec{
		Kind: KindDNS, Interval: time.Second, Timeout: 750 * time.Millisecond,
		FailThreshold: 3, RecoverThreshold: 2,
		DNS: &DNSSpec{Server: "127.0.0.1:53", Name: "a.test", Type: "A", Net: "udp"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WithDefaults() (-want +got):\n%s", diff)
	}
}

func TestNewRejectsBadCAFile(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, file string
	}{
		{"not pem", notPEM},
		{"missing file", filepath.Join(dir, "absent.pem")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Spec{Kind: KindHTTP, HTTP: &HTTPSpec{URL: "https://127.0.0.1/", CAFile: tt.file}})
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Field != "http.ca_file" {
				t.Errorf("New() error = %v, want a *ValidationError for http.ca_file", err)
			}
		})
	}
}
