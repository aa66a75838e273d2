package pgharness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BinDir returns the directory of the PostgreSQL programs the harness
// runs (pg_ctl is there). It fails the test when they are missing.
func BinDir(t testing.TB) string {
	t.Helper()
	e, err := lookupEnv()
	if err != nil {
		t.Fatalf("pgharness: %v; run `make deps` to install PostgreSQL 15", err)
	}
	return e.bin
}

// HandOver lets something other than the harness stop and start the
// server from now on: pg_ctl, a demote command, the code under test. The
// harness writes the server's port, listen address and socket directory
// into postgresql.conf, so that a start by pg_ctl -D DataDir listens where
// DSN points; it stops tracking its own postmaster once that exits; and at
// cleanup it stops whatever postmaster postmaster.pid then names
// (immediate shutdown, then SIGKILL to its process group) before the
// directory is removed. Start, Stop and Kill of the harness should not be
// used after HandOver.
func (s *Server) HandOver(t testing.TB) {
	t.Helper()
	conf := fmt.Sprintf("\n# pgharness: handed over\nport = %d\nlisten_addresses = '%s'\nunix_socket_directories = '%s'\n",
		s.Port, s.Host, s.SocketDir)
	path := filepath.Join(s.DataDir, "postgresql.conf")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("pgharness: open %s: %v", path, err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("pgharness: write %s: %v", path, err)
	}

	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if p == nil {
			return
		}
		<-p.done
		s.mu.Lock()
		if s.proc == p {
			s.proc = nil
		}
		s.mu.Unlock()
	}()
	t.Cleanup(func() {
		if err := s.stopExternal(); err != nil {
			t.Errorf("pgharness: stop %s: %v", s.Name, err)
		}
		if p != nil {
			s.mu.Lock()
			if s.proc == p {
				// Still the harness's own postmaster: its cleanup
				// stops it and the goroutine above ends.
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
		}
		<-done
	})
}

// stopExternal stops the postmaster that postmaster.pid names, if it runs.
func (s *Server) stopExternal() error {
	s.mu.Lock()
	own := s.proc != nil
	s.mu.Unlock()
	if own {
		return nil // the harness's cleanup stops its own postmaster
	}
	pid, err := PostmasterPID(s.DataDir)
	if err != nil || pid == 0 || !Alive(pid) {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal postmaster %d: %w", pid, err)
	}
	deadline := time.Now().Add(stopTimeout)
	for Alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitGroupGone(pid)
			return fmt.Errorf("postmaster %d: no immediate shutdown within %v, killed", pid, stopTimeout)
		}
		time.Sleep(pollInterval)
	}
	return nil
}

// PostmasterPID returns the pid in the first line of dataDir's
// postmaster.pid, or 0 when there is no such file.
func PostmasterPID(dataDir string) (int, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0, fmt.Errorf("postmaster.pid: %w", err)
	}
	return pid, nil
}

// Alive reports whether process pid exists and is not a zombie. A
// postmaster started by pg_ctl is reparented, and a zombie of it may
// linger until its new parent reaps it.
func Alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state …; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
