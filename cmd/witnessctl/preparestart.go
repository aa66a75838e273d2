package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"google.golang.org/grpc"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// standbySignal is the file that makes PostgreSQL start in recovery.
const standbySignal = "standby.signal"

// prepareStart readies a PostgreSQL data directory to start: as a standby
// (standby.signal written) unless a linearizable read of the group says
// that site is active, in which case a standby.signal that Witness's
// demotion left is removed. Meant for the database unit's ExecStartPre, so
// that a primary cut off and failed over, or restarted after a power cut,
// never comes back writable on its own. When no witness answers, it starts
// as a standby: the safe side; an operator can remove the file by hand.
func (c *cli) prepareStart(args []string) error {
	var dataDir string
	pos, err := c.flags("prepare-start", "prepare-start GROUP SITE --data-dir DIR", args, func(fs *flag.FlagSet) {
		fs.StringVar(&dataDir, "data-dir", "", "the database's data `directory`")
	}, 2)
	if err != nil {
		return err
	}
	if dataDir == "" || !filepath.IsAbs(dataDir) {
		fmt.Fprintln(c.stderr, "witnessctl prepare-start: --data-dir must be an absolute path")
		return errUsage
	}
	group, site := pos[0], pos[1]
	g, err := c.readGroup(group)
	active, token := g.GetStatus().GetActiveSite(), g.GetStatus().GetToken()
	signal := filepath.Join(dataDir, standbySignal)
	switch {
	case err != nil:
		fmt.Fprintf(c.stderr, "witnessctl prepare-start: no linearizable read of group %s (%v): starting as a standby\n", group, err)
		return writeSignal(signal, dataDir)
	case active != site:
		if err := writeSignal(signal, dataDir); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "group %s is active at %s (token %d), not %s: %s starts as a standby\n", group, active, token, site, dataDir)
		return nil
	case !actingNode(g, dataDir):
		if err := writeSignal(signal, dataDir); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "group %s is active at %s (token %d) on node %s, not this one: %s starts as a standby\n", group, active, token, g.GetStatus().GetActiveNode(), dataDir)
		return nil
	}
	if err := os.Remove(signal); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", signal, err)
	}
	fmt.Fprintf(c.stdout, "group %s is active at %s (token %d): %s starts as it is configured\n", group, site, token, dataDir)
	return nil
}

// actingNode reports whether dataDir is the node of g that acts for its
// active site: always for a group with one node per site; for one with
// several, the node the current token promoted (active_node), or, when it
// names none, the site's node with a data_dir.
func actingNode(g *witnessv1.Group, dataDir string) bool {
	nodes := g.GetSpec().GetActions().GetPostgres().GetNodes()
	if len(nodes) == 0 {
		return true
	}
	st := g.GetStatus()
	for _, n := range nodes {
		if n.GetSite() == st.GetActiveSite() && filepath.Clean(n.GetDataDir()) == filepath.Clean(dataDir) {
			return st.GetActiveNode() == "" || st.GetActiveNode() == n.GetName()
		}
	}
	return false
}

// readGroup reads the group linearizably from the first of the
// comma-separated --addr witnesses that can give such a read.
func (c *cli) readGroup(group string) (*witnessv1.Group, error) {
	var errs []error
	creds, err := c.g.dialOption()
	if err != nil {
		return nil, err
	}
	for _, addr := range strings.Split(c.g.addr, ",") {
		conn, err := grpc.NewClient(strings.TrimSpace(addr), creds)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ctx, cancel := c.ctx()
		resp, err := witnessv1.NewAdminClient(conn).GetGroup(ctx, &witnessv1.GetGroupRequest{Name: group, Linearizable: true})
		cancel()
		conn.Close()
		if err == nil {
			return resp.GetGroup(), nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, errors.Join(errs...)
}

// writeSignal writes standby.signal, owned like the data directory.
func writeSignal(signal, dataDir string) error {
	info, err := os.Stat(dataDir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", signal, err)
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := os.Chown(signal, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", signal, err)
		}
	}
	return nil
}
