package probes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// execWaitDelay bounds how long a check waits for the output pipes to close
// after the command has exited or been killed.
const execWaitDelay = 500 * time.Millisecond

func newExecCheck(e ExecSpec) func(context.Context) Result {
	return func(ctx context.Context) Result {
		cmd := exec.CommandContext(ctx, e.Command, e.Args...)
		if len(e.Env) > 0 {
			cmd.Env = append(os.Environ(), e.Env...)
		}
		out := &cappedBuffer{limit: e.OutputLimit}
		cmd.Stdout = out
		cmd.Stderr = out
		cmd.WaitDelay = execWaitDelay
		setProcessGroup(cmd)
		err := cmd.Run()
		killProcessGroup(cmd)
		output := out.String()
		var exitErr *exec.ExitError
		switch {
		case err == nil:
			return Result{OK: true, Detail: withOutput("exit 0", output)}
		case errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState.Success():
			// It exited 0 but left a child holding its output open.
			return Result{OK: true, Detail: withOutput("exit 0", output)}
		case errors.As(err, &exitErr) && exitErr.Exited():
			return Result{Detail: withOutput(fmt.Sprintf("exit %d", exitErr.ExitCode()), output)}
		default:
			return Result{Detail: withOutput(err.Error(), output)}
		}
	}
}

func withOutput(status, output string) string {
	output = strings.TrimSpace(output)
	if output == "" {
		return status
	}
	return status + ": " + output
}

// cappedBuffer keeps the first limit bytes written to it and counts the
// rest. os/exec serialises writes when Stdout and Stderr are the same
// pointer.
type cappedBuffer struct {
	limit   int
	buf     []byte
	dropped int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	n := min(len(p), b.limit-len(b.buf))
	if n > 0 {
		b.buf = append(b.buf, p[:n]...)
	}
	b.dropped += len(p) - max(n, 0)
	return len(p), nil
}

func (b *cappedBuffer) String() string {
	if b.dropped == 0 {
		return string(b.buf)
	}
	return fmt.Sprintf("%s… (%d bytes dropped)", b.buf, b.dropped)
}
