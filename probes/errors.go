package probes

import (
	"errors"
	"fmt"
)

// Errors returned by this package. Validation problems come wrapped in a
// [*ValidationError] that names the field; match them with errors.Is.
var (
	// ErrUnknownKind means Spec.Kind is not one of the known probe kinds.
	ErrUnknownKind = errors.New("unknown probe kind")
	// ErrMissing means a required field is empty.
	ErrMissing = errors.New("missing value")
	// ErrInvalid means a field's value is malformed or out of range.
	ErrInvalid = errors.New("invalid value")
	// ErrTimeoutNotBelowInterval means Timeout >= Interval: a check could
	// still be running when the next one is due.
	ErrTimeoutNotBelowInterval = errors.New("timeout must be shorter than interval")
	// ErrDuplicateTarget means two targets given to SetTargets share the
	// same group, site and name.
	ErrDuplicateTarget = errors.New("duplicate target")
	// ErrAlreadyRunning means Run was called while the scheduler was
	// already running.
	ErrAlreadyRunning = errors.New("scheduler already running")
)

// ValidationError names the field of a [Spec] (as a config path relative to
// the probe, such as "http.url" or "timeout") that failed validation.
// Value is nil when the field is missing or holds a secret.
type ValidationError struct {
	Field string
	Value any
	Err   error
}

func (e *ValidationError) Error() string {
	if e.Value == nil {
		return fmt.Sprintf("%s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("%s %v: %v", e.Field, e.Value, e.Err)
}

func (e *ValidationError) Unwrap() error { return e.Err }

// TargetError says which target of a SetTargets call was rejected.
type TargetError struct {
	Group, Site, Name string
	Err               error
}

func (e *TargetError) Error() string {
	return fmt.Sprintf("target %s/%s/%s: %v", e.Group, e.Site, e.Name, e.Err)
}

func (e *TargetError) Unwrap() error { return e.Err }
