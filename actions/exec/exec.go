package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// DefaultTimeout bounds a hook whose Timeout is zero.
	DefaultTimeout = 30 * time.Second
	// DefaultOutputLimit bounds the output kept of a hook whose OutputLimit
	// is zero.
	DefaultOutputLimit = 16 << 10
	// OutputGrace is how long Run keeps reading output after the command
	// exited, for background processes that still hold its output open.
	OutputGrace = time.Second
)

// Hook is one operator command.
type Hook struct {
	// Name identifies the hook in errors and logs ("start-west").
	Name string
	// Command is the program: a path, or a name looked up in PATH. It is
	// run directly, not through a shell.
	Command string
	// Args are the arguments after the program name.
	Args []string
	// Timeout bounds the run; DefaultTimeout when zero.
	Timeout time.Duration
	// Env holds extra KEY=VALUE variables, added after the daemon's own.
	Env []string
	// OutputLimit bounds the bytes of output kept; DefaultOutputLimit when
	// zero.
	OutputLimit int
}

// Event is the transition a hook runs for.
type Event struct {
	Group string
	Token uint64
	From  string
	To    string
	Step  string
}

// Result is what a run of a hook did.
type Result struct {
	// ExitCode is the exit status; -1 when a signal ended the command
	// (the timeout among them) or it never started.
	ExitCode int
	// Output is the combined standard output and error, bounded by the
	// hook's OutputLimit, with a line saying how many bytes were dropped.
	Output string
	// Duration is how long the command ran, from start until it had
	// exited and Run had its output.
	Duration time.Duration
}

// Run runs h for ev and waits for it to end, at most h.Timeout or until ctx
// ends. See the package documentation for the environment, the output and
// the errors.
func Run(ctx context.Context, h Hook, ev Event) (Result, error) {
	res := Result{ExitCode: -1}
	if err := h.validate(); err != nil {
		return res, hookError(h.Name, err)
	}
	timeout := h.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	limit := h.OutputLimit
	if limit == 0 {
		limit = DefaultOutputLimit
	}

	if err := ctx.Err(); err != nil {
		return res, hookError(h.Name, err)
	}
	hctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrTimeout)
	defer cancel()

	out := newBoundedOutput(limit)
	cmd := osexec.CommandContext(hctx, h.Command, h.Args...)
	cmd.Env = environment(h.Env, ev)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The group's id is the command's pid. Killing the group also
		// reaches the children the command started.
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	cmd.WaitDelay = OutputGrace

	start := time.Now()
	if err := cmd.Start(); err != nil {
		res.Output = out.String()
		return res, hookError(h.Name, &reasonError{reason: ErrStart, err: err})
	}
	waitErr := cmd.Wait()
	res.Duration = time.Since(start)
	res.Output = out.String()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}

	if hctx.Err() != nil && !exitedByItself(cmd.ProcessState) {
		// Whatever ended the command, it was our kill: say why.
		if cerr := ctx.Err(); cerr != nil {
			return res, hookError(h.Name, &reasonError{reason: cerr, detail: "command killed", err: lastLineError(out)})
		}
		return res, hookError(h.Name, &reasonError{
			reason: ErrTimeout,
			detail: "killed after " + timeout.String(),
			err:    lastLineError(out),
		})
	}
	var exitErr *osexec.ExitError
	switch {
	case waitErr == nil, errors.Is(waitErr, osexec.ErrWaitDelay):
		// ErrWaitDelay: the command succeeded but left background
		// processes holding its output; they are not ours to stop.
		return res, nil
	case errors.As(waitErr, &exitErr):
		return res, hookError(h.Name, &ExitError{
			Code:     exitErr.ExitCode(),
			Status:   exitErr.String(),
			LastLine: out.lastLine(),
		})
	default:
		return res, hookError(h.Name, fmt.Errorf("wait for command: %w", waitErr))
	}
}

// exitedByItself reports whether the process ended with an exit status
// rather than by a signal, so that a command that finished just as the
// timeout passed is judged by its status.
func exitedByItself(ps *os.ProcessState) bool {
	return ps != nil && ps.Exited()
}

// lastLineError returns the last line of output as an error to quote, or nil.
func lastLineError(out *boundedOutput) error {
	if l := out.lastLine(); l != "" {
		return errors.New(l)
	}
	return nil
}

func (h *Hook) validate() error {
	switch {
	case h.Name == "":
		return &reasonError{reason: ErrInvalid, detail: "no name"}
	case h.Command == "":
		return &reasonError{reason: ErrInvalid, detail: "no command"}
	case h.Timeout < 0:
		return &reasonError{reason: ErrInvalid, detail: "negative timeout " + h.Timeout.String()}
	case h.OutputLimit < 0:
		return &reasonError{reason: ErrInvalid, detail: "negative output limit " + strconv.Itoa(h.OutputLimit)}
	}
	for _, kv := range h.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return &reasonError{reason: ErrInvalid, detail: fmt.Sprintf("env entry %q is not KEY=VALUE", kv)}
		}
	}
	return nil
}

// environment is the daemon's environment, then extra, then the event's
// variables. os/exec keeps the last of duplicate keys, so the event's
// variables win.
func environment(extra []string, ev Event) []string {
	env := os.Environ()
	env = append(env, extra...)
	return append(env,
		"WITNESS_GROUP="+ev.Group,
		"WITNESS_TOKEN="+strconv.FormatUint(ev.Token, 10),
		"WITNESS_FROM="+ev.From,
		"WITNESS_TO="+ev.To,
		"WITNESS_STEP="+ev.Step,
	)
}
