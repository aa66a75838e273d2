package config

import (
	"errors"
	"fmt"
	"strings"
)

// Reasons a value is refused, wrapped by *ValidationError.
var (
	ErrRequired  = errors.New("is required")
	ErrInvalid   = errors.New("is not valid")
	ErrDuplicate = errors.New("is used twice")
	ErrConflict  = errors.New("conflicts with another setting")
	ErrUnknown   = errors.New("is not known")
	ErrSyntax    = errors.New("cannot be parsed")
	// ErrOwned: another group already manages the DNS name (CheckOwnership).
	ErrOwned = errors.New("is managed by another group")
	// ErrUnreadable: a file the group's actions need cannot be read here
	// (CheckLocalFiles).
	ErrUnreadable = errors.New("cannot be read")
)

// ValidationError names one bad value by its field path.
type ValidationError struct {
	Field string // e.g. groups[1].sites[2].probes
	Value string // the offending value, when it helps
	Err   error  // one of the Err… reasons, possibly wrapped with detail
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	if e.Value != "" {
		fmt.Fprintf(&b, "%q ", e.Value)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ValidationError) Unwrap() error { return e.Err }

// Errors is every problem found in one document or configuration.
type Errors []*ValidationError

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As look at each problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// problems collects validation errors while walking a document.
type problems struct{ list Errors }

func (p *problems) add(field, value string, err error) {
	p.list = append(p.list, &ValidationError{Field: field, Value: value, Err: err})
}

// addf wraps reason with a detail: "is not valid: want 1 to 65535".
func (p *problems) addf(field, value string, reason error, format string, args ...any) {
	p.add(field, value, fmt.Errorf("%w: %s", reason, fmt.Sprintf(format, args...)))
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return p.list
}
