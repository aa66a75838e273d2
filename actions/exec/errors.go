package exec

import (
	"errors"
	"fmt"
)

// Errors of hook commands, for errors.Is.
var (
	// ErrExit means the command ran and exited with a non-zero status or
	// was killed by a signal that Run did not send. The error is also an
	// *ExitError with the code and the last line of output.
	ErrExit = errors.New("command failed")

	// ErrTimeout means the command was still running when Hook.Timeout
	// passed; its whole process group was killed.
	ErrTimeout = errors.New("command timed out")

	// ErrStart means the command could not be started: the binary is
	// missing, is not executable, or the process could not be created.
	ErrStart = errors.New("command did not start")

	// ErrInvalid means the Hook itself cannot be run: no name or command,
	// a negative timeout, or an Env entry that is not KEY=VALUE.
	ErrInvalid = errors.New("invalid hook")
)

// ExitError is returned, wrapped with the hook's name, when a command exits
// with a non-zero status. It matches ErrExit with errors.Is.
type ExitError struct {
	// Code is the exit status, or -1 when a signal ended the process.
	Code int
	// Status is how the process ended, as the system says it:
	// "exit status 3", "signal: segmentation fault".
	Status string
	// LastLine is the last non-empty line of the output, shortened.
	LastLine string
}

func (e *ExitError) Error() string {
	if e.LastLine == "" {
		return e.Status
	}
	return e.Status + ": " + e.LastLine
}

// Unwrap returns ErrExit.
func (e *ExitError) Unwrap() error { return ErrExit }

// reasonError puts a sentinel (or a context error) in front of the detail
// that explains it; both match with errors.Is.
type reasonError struct {
	reason error
	detail string
	err    error // optional
}

func (e *reasonError) Error() string {
	s := e.reason.Error()
	if e.detail != "" {
		s += ": " + e.detail
	}
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *reasonError) Unwrap() []error {
	if e.err == nil {
		return []error{e.reason}
	}
	return []error{e.reason, e.err}
}

// hookError names the hook in front of err.
func hookError(name string, err error) error {
	return fmt.Errorf("hook %s: %w", name, err)
}
