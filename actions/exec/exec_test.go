package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// script writes an sh script to a temporary directory and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// killOnCleanup kills pid when the test ends, for processes a test
// deliberately leaves running.
func killOnCleanup(t *testing.T, pid int) {
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
}

var event = Event{Group: "app", Token: 8, From: "east", To: "west", Step: "promote"}

func TestRunEnvironment(t *testing.T) {
	t.Setenv("WITNESS_TEST_PARENT", "from-daemon")
	h := Hook{
		Name: "show-env",
		Command: script(t, `for v in WITNESS_GROUP WITNESS_TOKEN WITNESS_FROM WITNESS_TO WITNESS_STEP EXTRA WITNESS_TEST_PARENT; do
	eval "printf '%s=%s\n' $v \"\$$v\""
done`),
		// The event's variables win over an extra one of the same name.
		Env: []string{"EXTRA=one two", "WITNESS_TOKEN=999"},
	}
	res, err := Run(t.Context(), h, event)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := strings.Join([]string{
		"WITNESS_GROUP=app",
		"WITNESS_TOKEN=8",
		"WITNESS_FROM=east",
		"WITNESS_TO=west",
		"WITNESS_STEP=promote",
		"EXTRA=one two",
		"WITNESS_TEST_PARENT=from-daemon",
	}, "\n") + "\n"
	if diff := cmp.Diff(want, res.Output); diff != "" {
		t.Errorf("environment seen by the hook (-want +got):\n%s", diff)
	}
	if res.ExitCode != 0 {
		t.Errorf("ExitCode = %d, want 0", res.ExitCode)
	}
}

func TestRunArgsWithoutShell(t *testing.T) {
	// Arguments reach the program as they are: no shell splits or expands
	// them.
	h := Hook{Name: "args", Command: "printf", Args: []string{"[%s]\n", "a b", "$HOME", "*"}}
	res, err := Run(t.Context(), h, event)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if diff := cmp.Diff("[a b]\n[$HOME]\n[*]\n", res.Output); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestRunExitStatus(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantCode int
		wantErr  *ExitError
		wantOut  string
	}{
		{
			name:     "exit 3 with output on both streams",
			body:     "echo starting servers\necho 'replica west-db2 not found' >&2\nexit 3",
			wantCode: 3,
			wantErr:  &ExitError{Code: 3, Status: "exit status 3", LastLine: "replica west-db2 not found"},
			wantOut:  "starting servers\nreplica west-db2 not found\n",
		},
		{
			name:     "exit 1 without output",
			body:     "exit 1",
			wantCode: 1,
			wantErr:  &ExitError{Code: 1, Status: "exit status 1"},
		},
		{
			name:     "killed by a signal it did not get from Run",
			body:     "echo bye\nkill -TERM $$",
			wantCode: -1,
			wantErr:  &ExitError{Code: -1, Status: "signal: terminated", LastLine: "bye"},
			wantOut:  "bye\n",
		},
		{
			name:     "success",
			body:     "echo done",
			wantCode: 0,
			wantOut:  "done\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(t.Context(), Hook{Name: "start-west", Command: script(t, tt.body)}, event)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			} else {
				if !errors.Is(err, ErrExit) {
					t.Fatalf("Run error = %v, want ErrExit", err)
				}
				var got *ExitError
				if !errors.As(err, &got) {
					t.Fatalf("Run error = %v, want an *ExitError", err)
				}
				if diff := cmp.Diff(tt.wantErr, got); diff != "" {
					t.Errorf("ExitError (-want +got):\n%s", diff)
				}
				if errors.Is(err, ErrTimeout) || errors.Is(err, ErrStart) {
					t.Errorf("Run error = %v also matches ErrTimeout or ErrStart", err)
				}
			}
			if res.ExitCode != tt.wantCode {
				t.Errorf("ExitCode = %d, want %d", res.ExitCode, tt.wantCode)
			}
			if diff := cmp.Diff(tt.wantOut, res.Output); diff != "" {
				t.Errorf("Output (-want +got):\n%s", diff)
			}
		})
	}
}

// setSubreaper makes the test process the reaper of orphaned descendants,
// so that a grandchild whose parent was killed becomes a child of the test
// and the test can wait for it and see how it ended.
func setSubreaper(t *testing.T) {
	t.Helper()
	const prSetChildSubreaper = 36
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", errno)
	}
}

// waitKilled waits for the orphaned process pid and reports whether
// SIGKILL ended it. A process that ends by itself makes this return
// false; one that never ends blocks the test until the go test timeout.
func waitKilled(t *testing.T, pid int) {
	t.Helper()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.ECHILD) {
			// Not our child: its own parent reaped it before dying, so it
			// is gone. Make sure it is.
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Fatalf("process %d still exists after the hook was killed", pid)
			}
			return
		}
		if err != nil {
			t.Fatalf("wait for process %d: %v", pid, err)
		}
		break
	}
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("process %d ended with %v, want killed by SIGKILL", pid, ws)
	}
}

// readPID reads the pid a hook script wrote.
func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	setSubreaper(t)
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	// The hook starts a grandchild that would outlive it by far, prints,
	// and hangs.
	body := fmt.Sprintf("sleep 30 &\necho $! > %s\necho waiting for the dormant servers\nwait", pidFile)
	const timeout = 500 * time.Millisecond
	h := Hook{Name: "start-west", Command: script(t, body), Timeout: timeout}

	start := time.Now()
	res, err := Run(t.Context(), h, event)
	elapsed := time.Since(start)

	t.Logf("Run returned %v after the %v timeout", elapsed-timeout, timeout)
	grandchild := readPID(t, pidFile)
	killOnCleanup(t, grandchild)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Run error = %v, want ErrTimeout", err)
	}
	if errors.Is(err, ErrExit) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run error = %v also matches ErrExit or DeadlineExceeded", err)
	}
	if elapsed < timeout || elapsed > timeout+OutputGrace {
		t.Errorf("Run returned after %v, want soon after the %v timeout", elapsed, timeout)
	}
	if res.ExitCode != -1 {
		t.Errorf("ExitCode = %d, want -1 (killed)", res.ExitCode)
	}
	if diff := cmp.Diff("waiting for the dormant servers\n", res.Output); diff != "" {
		t.Errorf("Output (-want +got):\n%s", diff)
	}
	waitKilled(t, grandchild)
}

func TestRunContextEndKillsProcessGroup(t *testing.T) {
	setSubreaper(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "ready")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The hook starts a grandchild, says so through the fifo, and hangs.
	body := fmt.Sprintf("sleep 30 &\necho $! > %s\nwait", fifo)
	h := Hook{Name: "stop-imports", Command: script(t, body), Timeout: time.Minute}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := Run(ctx, h, event)
		done <- outcome{res, err}
	}()

	// O_RDWR never blocks on open, so a hook that fails early cannot hang
	// the test here; the read below then races with done.
	f, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pidc := make(chan int, 1)
	go func() {
		buf := make([]byte, 32)
		n, _ := f.Read(buf)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
		pidc <- pid
	}()
	var grandchild int
	select {
	case grandchild = <-pidc:
	case o := <-done:
		t.Fatalf("Run returned before the hook was ready: %v", o.err)
	}
	killOnCleanup(t, grandchild)

	cancel()
	o := <-done
	if !errors.Is(o.err, context.Canceled) {
		t.Fatalf("Run error = %v, want context.Canceled", o.err)
	}
	if errors.Is(o.err, ErrTimeout) || errors.Is(o.err, ErrExit) {
		t.Errorf("Run error = %v also matches ErrTimeout or ErrExit", o.err)
	}
	waitKilled(t, grandchild)
}

func TestRunBackgroundChildDoesNotBlock(t *testing.T) {
	// The hook exits at once but leaves a process that holds its output
	// open. Run returns with the hook's success after OutputGrace and
	// leaves the process running.
	pidFile := filepath.Join(t.TempDir(), "daemon.pid")
	body := fmt.Sprintf("sleep 30 &\necho $! > %s\necho started", pidFile)
	start := time.Now()
	res, err := Run(t.Context(), Hook{Name: "start-daemon", Command: script(t, body)}, event)
	elapsed := time.Since(start)
	daemon := readPID(t, pidFile)
	killOnCleanup(t, daemon)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if elapsed > OutputGrace+5*time.Second {
		t.Errorf("Run took %v, want about OutputGrace (%v)", elapsed, OutputGrace)
	}
	if diff := cmp.Diff("started\n", res.Output); diff != "" {
		t.Errorf("Output (-want +got):\n%s", diff)
	}
	if err := syscall.Kill(daemon, 0); err != nil {
		t.Errorf("background process of a successful hook: %v, want it still running", err)
	}
}

func TestRunOutputBounded(t *testing.T) {
	// 100 000 bytes of "x" then a last line; 1 000 kept.
	body := "head -c 100000 /dev/zero | tr '\\0' x\necho\necho the end\nexit 2"
	res, err := Run(t.Context(), Hook{Name: "chatty", Command: script(t, body), OutputLimit: 1000}, event)
	var exitErr *ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("Run error = %v, want an *ExitError", err)
	}
	if exitErr.LastLine != "the end" {
		t.Errorf("LastLine = %q, want %q", exitErr.LastLine, "the end")
	}
	total := 100000 + len("\nthe end\n")
	want := strings.Repeat("x", 500) + "\n" +
		fmt.Sprintf("[witness: %d bytes of output dropped]\n", total-1000) +
		strings.Repeat("x", 500-len("\nthe end\n")) + "\nthe end\n"
	if diff := cmp.Diff(want, res.Output); diff != "" {
		t.Errorf("Output (-want +got):\n%s", diff)
	}
}

func TestRunStartErrors(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "not-executable.sh")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		hook Hook
		want error
	}{
		{"missing binary by path", Hook{Name: "h", Command: filepath.Join(t.TempDir(), "nope")}, ErrStart},
		{"missing binary in PATH", Hook{Name: "h", Command: "witness-no-such-command"}, ErrStart},
		{"not executable", Hook{Name: "h", Command: notExec}, ErrStart},
		{"no name", Hook{Command: "true"}, ErrInvalid},
		{"no command", Hook{Name: "h"}, ErrInvalid},
		{"negative timeout", Hook{Name: "h", Command: "true", Timeout: -time.Second}, ErrInvalid},
		{"env entry without =", Hook{Name: "h", Command: "true", Env: []string{"JUSTKEY"}}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Run(t.Context(), tt.hook, event)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Run error = %v, want %v", err, tt.want)
			}
			if errors.Is(err, ErrExit) {
				t.Errorf("Run error = %v also matches ErrExit", err)
			}
			if res.ExitCode != -1 {
				t.Errorf("ExitCode = %d, want -1", res.ExitCode)
			}
		})
	}
}

func TestRunContextAlreadyDone(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	_, err := Run(ctx, Hook{Name: "h", Command: script(t, "touch "+marker)}, event)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run error = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hook ran although ctx had ended (stat: %v)", err)
	}
}
