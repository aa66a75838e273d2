package harness

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// replicationRules are the iptables rules, in the fault chain of site a's
// namespace, that drop PostgreSQL traffic to and from site b.
func replicationRules(b string) [][]string {
	peer := siteAddr[b]
	return [][]string{
		{faultChain, "-p", "tcp", "-d", peer, "--dport", "5432", "-j", "DROP"},
		{faultChain, "-p", "tcp", "-s", peer, "--sport", "5432", "-j", "DROP"},
		{faultChain, "-p", "tcp", "-s", peer, "--dport", "5432", "-j", "DROP"},
		{faultChain, "-p", "tcp", "-d", peer, "--sport", "5432", "-j", "DROP"},
	}
}

// HoldReplication drops the PostgreSQL traffic between sites a and b (the
// WAL stream of a standby at one from a primary at the other), both
// ways; everything else between them flows. ReleaseReplication undoes it.
func (e *Env) HoldReplication(a, b string) error {
	for _, pair := range [][2]string{{a, b}, {b, a}} {
		if err := e.ensureChain(pair[0]); err != nil {
			return err
		}
		for _, rule := range replicationRules(pair[1]) {
			if err := inNS(netnsName(pair[0]), append([]string{"iptables", "-w", "-A"}, rule...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// ReleaseReplication lets PostgreSQL traffic between a and b through again.
func (e *Env) ReleaseReplication(a, b string) error {
	for _, pair := range [][2]string{{a, b}, {b, a}} {
		ns := netnsName(pair[0])
		for _, rule := range replicationRules(pair[1]) {
			for inNS(ns, append([]string{"iptables", "-w", "-C"}, rule...)...) == nil {
				if err := inNS(ns, append([]string{"iptables", "-w", "-D"}, rule...)...); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Witnessctl runs witnessctl against the leader and returns its output
// (stdout and stderr).
func (e *Env) Witnessctl(args ...string) (string, error) {
	l, err := e.WaitLeader(time.Minute, nil)
	if err != nil {
		return "", err
	}
	flags := append(e.witnessctlTLS(), "--addr", l.AdminAddr(), "--timeout", "20s")
	cmd := exec.Command(filepath.Join(e.bin, "witnessctl"), append(flags, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("witnessctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// numberedTable is where the NumberedWriter commits its numbers.
const numberedTable = `CREATE TABLE IF NOT EXISTS harness_numbers (n bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());
GRANT SELECT, INSERT ON harness_numbers TO ` + AppRole

// NumberedWriter is a client that commits numbered rows, one a
// transaction, as fast as it can, at the database the group's DNS record
// points at (asked again after every error), and keeps the numbers each
// database acknowledged.
type NumberedWriter struct {
	mu     sync.Mutex
	acked  map[string][]int64 // site -> numbers it acknowledged
	next   int64
	cancel context.CancelFunc
	done   chan struct{}
}

// StartNumberedWriter makes the table at the active primary (east) and
// starts writing.
func (e *Env) StartNumberedWriter() (*NumberedWriter, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := e.PG["east"].Exec(ctx, numberedTable)
	cancel()
	if err != nil {
		return nil, err
	}
	wctx, wcancel := context.WithCancel(context.Background())
	w := &NumberedWriter{acked: map[string][]int64{}, cancel: wcancel, done: make(chan struct{})}
	go w.run(wctx, e)
	return w, nil
}

func (w *NumberedWriter) run(ctx context.Context, e *Env) {
	defer close(w.done)
	var conn *pgx.Conn
	site := ""
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			a, err := queryRecord(siteAddr["dns"] + ":53")
			if err != nil {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			site = ""
			for s, v := range recordValue {
				if v == a.Value {
					site = s
				}
			}
			if site == "" {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			conn, err = pgx.Connect(cctx, e.PG[site].appDSN())
			cancel()
			if err != nil {
				conn = nil
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		w.mu.Lock()
		n := w.next + 1
		w.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := conn.Exec(wctx, "INSERT INTO harness_numbers (n) VALUES ($1)", n)
		cancel()
		if err != nil {
			var pe interface{ SQLState() string }
			if errors.As(err, &pe) && pe.SQLState() == "23505" {
				// Committed before, its acknowledgement lost: not counted.
				w.mu.Lock()
				w.next = n
				w.mu.Unlock()
				continue
			}
			conn.Close(context.Background())
			conn = nil
			time.Sleep(20 * time.Millisecond)
			continue
		}
		w.mu.Lock()
		w.next = n
		w.acked[site] = append(w.acked[site], n)
		w.mu.Unlock()
	}
}

// Stop ends the writer and returns the numbers each site acknowledged.
func (w *NumberedWriter) Stop() map[string][]int64 {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

// Missing returns the acknowledged numbers that site's database does not
// hold.
func (e *Env) Missing(site string, acked map[string][]int64) ([]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, e.PG[site].harnessDSN())
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, "SELECT n FROM harness_numbers")
	if err != nil {
		return nil, err
	}
	have := map[int64]bool{}
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		have[n] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var missing []int64
	for _, ns := range acked {
		for _, n := range ns {
			if !have[n] {
				missing = append(missing, n)
			}
		}
	}
	return missing, nil
}

// WaitDNS waits until BIND answers the group's record with site's value
// and returns when it first did.
func (e *Env) WaitDNS(site string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		a, err := queryRecord(siteAddr["dns"] + ":53")
		if err == nil && a.Value == recordValue[site] {
			return a.At, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("DNS does not answer %s after %s (last %+v, %v)", site, timeout, a, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
