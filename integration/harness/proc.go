package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is one program the harness started inside a site's namespace.
type Process struct {
	Name string // for logs: "witness east-1", "postgres west", "named"
	Site string
	Log  string // file holding its standard output and error

	argv []string
	env  []string
	user string // run as this OS user when not empty
	// dumpOnHang: SIGQUIT before SIGKILL when it does not stop (Go
	// programs print their goroutines).
	dumpOnHang bool

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	stopped bool // SIGSTOPped
}

// Start starts the process; a process may be started again after it ended.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s: already running", p.Name)
		}
	}
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := []string{"netns", "exec", netnsName(p.Site)}
	if p.user != "" {
		args = append(args, "setpriv", "--reuid="+p.user, "--regid="+p.user, "--init-groups", "--")
	}
	args = append(args, p.argv...)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), p.env...)
	// Its own process group, and SIGKILL when the harness dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(f, "=== %s start: %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(p.argv, " "))
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err, p.stopped = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "=== %s exit: %v\n", time.Now().Format(time.RFC3339Nano), err)
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Running reports whether the process was started and has not ended.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Pid is the process's id (0 before Start).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig to the process's whole group.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s: not started", p.Name)
	}
	select {
	case <-p.done:
		return fmt.Errorf("%s: not running", p.Name)
	default:
	}
	switch sig {
	case syscall.SIGSTOP:
		p.stopped = true
	case syscall.SIGCONT:
		p.stopped = false
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Kill SIGKILLs the process and waits for it to end.
func (p *Process) Kill() error {
	if !p.Running() {
		return nil
	}
	if err := p.Signal(syscall.SIGKILL); err != nil && p.Running() {
		return err
	}
	return p.Wait(stopTimeout)
}

// Terminate sends sig (SIGTERM, SIGINT) and waits up to timeout, then
// SIGKILLs.
func (p *Process) Terminate(sig syscall.Signal, timeout time.Duration) error {
	if !p.Running() {
		return nil
	}
	p.mu.Lock()
	stopped := p.stopped
	p.mu.Unlock()
	if stopped {
		_ = p.Signal(syscall.SIGCONT)
	}
	_ = p.Signal(sig)
	if err := p.Wait(timeout); err == nil {
		return nil
	}
	if p.dumpOnHang {
		// A Go program prints every goroutine's stack on SIGQUIT: the
		// log then tells where it hung.
		_ = p.Signal(syscall.SIGQUIT)
		if err := p.Wait(30 * time.Second); err == nil {
			return fmt.Errorf("%s did not stop within %s after %s; its goroutines are in %s", p.Name, timeout, sig, p.Log)
		}
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("%s did not stop within %s after %s: killed", p.Name, timeout, sig)
}

// Wait waits up to timeout for the process to end.
func (p *Process) Wait(timeout time.Duration) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s: still running after %s", p.Name, timeout)
	}
}

// Tail returns the last n bytes of the process's log.
func (p *Process) Tail(n int64) string { return tailFile(p.Log, n) }

func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return ""
	}
	return string(buf)
}

// userIDs returns the uid and gid of an OS user.
func userIDs(name string) (int, int, error) {
	out, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("no OS user %q: %w", name, err)
	}
	uid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return 0, 0, err
	}
	out, err = exec.Command("id", "-g", name).Output()
	if err != nil {
		return 0, 0, err
	}
	gid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	return uid, gid, err
}

var errNotRoot = errors.New("the integration harness makes network namespaces and needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN)")

func (p *Process) isStopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}
