// Command witnessctl is the operator's CLI for Witness, over the admin gRPC
// API of any witness.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/cmd/internal/buildinfo"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

const usage = `witnessctl talks to a witness's admin API.

Usage:
  witnessctl [global flags] COMMAND [args]

Commands:
  status                          leader, members and every group
  groups                          list groups
  group NAME                      one group in detail: status, history, steps
  apply -f FILE [--dry-run] [--active GROUP=SITE]
                                  create or update the groups in a YAML file (- for stdin)
  delete NAME                     delete a group
  switchover GROUP SITE [--token N] [--reason TEXT] [--wait D] [--at TIME]
                                  planned move of GROUP to SITE: fences the old site, waits
                                  until SITE has replayed its final WAL, then moves; refused
                                  if SITE is not eligible or the token moved; with --at
                                  (RFC 3339 or +30m) the leader starts it at that time
  switchover --cancel GROUP [--reason TEXT]
                                  cancel GROUP's scheduled switchover
  failover GROUP SITE --reason TEXT [--force] [--old-site-down] [--yes] [--token N] [--wait D]
                                  unplanned move of GROUP to SITE when its active site is
                                  lost: promoted once the old site is fenced or its lease
                                  has expired, or on your word with --old-site-down; --force
                                  overrides the data-loss guard; asks on a terminal (--yes)
  reinstate GROUP SITE [--wait D] turn the old primary at SITE into a streaming standby of
                                  the active site: saves its commits past the fork, then
                                  pg_rewind (or a fresh base backup); each step recorded
  mode GROUP auto|manual|observe  set a group's mode
  arm GROUP | disarm GROUP        allow or stop automatic failover of a group
  members                         list members
  members add NAME --raft-addr ADDR [--site SITE] [--gossip-addr ADDR]
  members remove NAME
  prepare-start GROUP SITE --data-dir DIR
                                  before PostgreSQL at SITE starts: make it start as a
                                  standby unless a linearizable read says SITE is active
                                  (--addr may list several witnesses, comma-separated)
  watch [GROUP]                   stream, live, verdicts, decisions, transitions and step
                                  results as the witness asked sees them change (-o json:
                                  one object per line); until interrupted
  history GROUP                   the group's transitions, newest first, each with its steps
  keyring list | install KEY | use KEY | remove KEY
                                  the gossip keyring of every member: rotate with install,
                                  then use, then remove (witnessd keygen makes a key)
  version                         print the version

Global flags (also accepted after the command):
  --addr ADDR     admin address of any witness (default 127.0.0.1:7400, env WITNESS_ADDR)
  -o FORMAT       table (default) or json
  --timeout DUR   deadline of each call (default 10s)
  --ca FILE       CA certificate for mutual TLS (env WITNESS_CA)
  --cert FILE     client certificate (env WITNESS_CERT), from witnessd tls cert create -client
  --key FILE      its private key (env WITNESS_KEY)
`

type globals struct {
	addr    string
	output  string
	timeout time.Duration
	// ca, cert and key are the CA and client certificate of mutual TLS
	// (tls.go).
	ca, cert, key string
}

func (g *globals) register(fs *flag.FlagSet) {
	def := os.Getenv("WITNESS_ADDR")
	if def == "" {
		def = "127.0.0.1:7400"
	}
	if g.addr == "" {
		g.addr = def
	}
	if g.output == "" {
		g.output = "table"
	}
	if g.timeout == 0 {
		g.timeout = 10 * time.Second
	}
	fs.StringVar(&g.addr, "addr", g.addr, "admin address of any witness")
	fs.StringVar(&g.output, "o", g.output, "output: table or json")
	fs.DurationVar(&g.timeout, "timeout", g.timeout, "deadline of each call")
	g.registerTLS(os.Getenv)
	fs.StringVar(&g.ca, "ca", g.ca, "CA certificate `file` the witness's certificate must chain to (env WITNESS_CA)")
	fs.StringVar(&g.cert, "cert", g.cert, "client certificate `file` (env WITNESS_CERT)")
	fs.StringVar(&g.key, "key", g.key, "client private key `file` (env WITNESS_KEY)")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

var errUsage = errors.New("usage")

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var g globals
	top := flag.NewFlagSet("witnessctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	g.register(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "witnessctl: %v\n\n%s", err, usage)
		return 2
	}
	rest := top.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	c := &cli{g: &g, stdin: stdin, stdout: stdout, stderr: stderr}
	err := c.dispatch(rest[0], rest[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	if st, ok := status.FromError(err); ok {
		fmt.Fprintf(stderr, "witnessctl: %s: %s\n", strings.ToLower(st.Code().String()), st.Message())
	} else {
		fmt.Fprintf(stderr, "witnessctl: %v\n", err)
	}
	return 1
}

type cli struct {
	g      *globals
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// flags parses a command's own flags; global flags are accepted too.
func (c *cli) flags(name, synopsis string, args []string, define func(fs *flag.FlagSet), nargs int) ([]string, error) {
	fs := flag.NewFlagSet("witnessctl "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	c.g.register(fs)
	if define != nil {
		define(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "Usage: witnessctl %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	// Let flags follow positional arguments: witnessctl group app -o json.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if nargs >= 0 && len(pos) != nargs {
		fmt.Fprintf(c.stderr, "witnessctl %s: want %d argument(s), got %d\n", name, nargs, len(pos))
		fs.Usage()
		return nil, errUsage
	}
	if c.g.output != "table" && c.g.output != "json" {
		fmt.Fprintf(c.stderr, "witnessctl: -o %q: want table or json\n", c.g.output)
		return nil, errUsage
	}
	return pos, nil
}

// maxMessage is the largest admin message witnessctl sends or receives,
// as the witness's admin server allows (cluster.MaxAdminMessage): gRPC's
// default 4 MiB does not hold the status of 10,000 groups.
const maxMessage = 64 << 20

func (c *cli) client() (witnessv1.AdminClient, func(), error) {
	creds, err := c.g.dialOption()
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient(c.g.addr, creds,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)))
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", c.g.addr, err)
	}
	return witnessv1.NewAdminClient(conn), func() { conn.Close() }, nil
}

func (c *cli) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.g.timeout)
}

func who() string {
	if u, err := user.Current(); err == nil {
		return "witnessctl:" + u.Username
	}
	return "witnessctl"
}

func (c *cli) dispatch(cmd string, args []string) error {
	switch cmd {
	case "status":
		return c.status(args)
	case "groups":
		return c.groups(args)
	case "group":
		return c.group(args)
	case "apply":
		return c.apply(args)
	case "delete":
		return c.delete(args)
	case "switchover":
		return c.switchover(args)
	case "failover":
		return c.failover(args)
	case "mode":
		return c.mode(args)
	case "arm", "disarm":
		return c.arm(cmd, args)
	case "members":
		return c.members(args)
	case "prepare-start":
		return c.prepareStart(args)
	case "watch":
		return c.watch(args)
	case "history":
		return c.history(args)
	case "reinstate":
		return c.reinstate(args)
	case "keyring":
		return c.keyring(args)
	case "version":
		fmt.Fprintln(c.stdout, "witnessctl", buildinfo.String())
		return nil
	case "help":
		fmt.Fprint(c.stdout, usage)
		return nil
	}
	fmt.Fprintf(c.stderr, "witnessctl: unknown command %q\n\n%s", cmd, usage)
	return errUsage
}

func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (c *cli) table(header string, rows [][]string) {
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	w.Flush()
}

func (c *cli) status(args []string) error {
	if _, err := c.flags("status", "status [-o json]", args, nil, 0); err != nil {
		return err
	}
	var st *witnessv1.StatusResponse
	if err := c.call(func(ctx context.Context, cl witnessv1.AdminClient) (err error) {
		st, err = cl.Status(ctx, &witnessv1.StatusRequest{})
		return err
	}); err != nil {
		return err
	}
	out := statusJSON{ClusterID: st.GetClusterId(), Node: st.GetNode(), Leader: st.GetLeader(), LastToken: st.GetLastToken(),
		Members: []memberJSON{}, Groups: []groupSummary{}}
	for _, m := range st.GetMembers() {
		out.Members = append(out.Members, toMember(m))
	}
	for _, g := range st.GetGroups() {
		out.Groups = append(out.Groups, toSummary(g))
	}
	if c.g.output == "json" {
		return c.printJSON(out)
	}
	leader := out.Leader
	if leader == "" {
		leader = "(none: the cluster has no majority)"
	}
	fmt.Fprintf(c.stdout, "cluster %s, answered by %s, leader %s\n\n", out.ClusterID, out.Node, leader)
	c.memberTable(out.Members)
	fmt.Fprintln(c.stdout)
	c.groupTable(out.Groups)
	return nil
}

func (c *cli) memberTable(ms []memberJSON) {
	var rows [][]string
	for _, m := range ms {
		role := "follower"
		switch {
		case m.Leader:
			role = "leader"
		case !m.Voter:
			role = "non-voter"
		}
		alive := "alive"
		if !m.Alive {
			alive = "unreachable"
		}
		rows = append(rows, []string{m.Name, dash(m.Site), m.Address, role, alive, dash(m.AdminAddress)})
	}
	c.table("MEMBER\tSITE\tRAFT ADDRESS\tROLE\tGOSSIP\tADMIN", rows)
}

func (c *cli) groupTable(gs []groupSummary) {
	if len(gs) == 0 {
		fmt.Fprintln(c.stdout, "no groups: apply some with 'witnessctl apply -f FILE'")
		return
	}
	var rows [][]string
	for _, g := range gs {
		armed := "armed"
		if !g.Armed {
			armed = "disarmed"
		}
		rows = append(rows, []string{g.Name, g.ActiveSite, strconv.FormatUint(g.Token, 10), g.Mode, armed, strings.Join(g.Sites, ",")})
	}
	c.table("GROUP\tACTIVE\tTOKEN\tMODE\tARMED\tSITES", rows)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *cli) groups(args []string) error {
	if _, err := c.flags("groups", "groups [-o json]", args, nil, 0); err != nil {
		return err
	}
	var resp *witnessv1.ListGroupsResponse
	if err := c.call(func(ctx context.Context, cl witnessv1.AdminClient) (err error) {
		resp, err = cl.ListGroups(ctx, &witnessv1.ListGroupsRequest{})
		return err
	}); err != nil {
		return err
	}
	out := []groupSummary{}
	for _, g := range resp.GetGroups() {
		out = append(out, toSummary(g))
	}
	if c.g.output == "json" {
		return c.printJSON(out)
	}
	c.groupTable(out)
	return nil
}

func (c *cli) group(args []string) error {
	pos, err := c.flags("group", "group NAME [-o json]", args, nil, 1)
	if err != nil {
		return err
	}
	var resp *witnessv1.GetGroupResponse
	if err := c.call(func(ctx context.Context, cl witnessv1.AdminClient) (err error) {
		resp, err = cl.GetGroup(ctx, &witnessv1.GetGroupRequest{Name: pos[0]})
		return err
	}); err != nil {
		return err
	}
	d := toDetail(resp.GetGroup())
	d.Explanation = toExplanation(resp.GetExplanation())
	if c.g.output == "json" {
		return c.printJSON(d)
	}
	armed := "armed"
	if !d.Armed {
		armed = fmt.Sprintf("disarmed (after the failover at token %d; 'witnessctl arm %s' to re-arm)", d.DisarmedAtToken, d.Name)
	}
	at := d.ActiveSite
	if d.ActiveNode != "" {
		at += " (node " + d.ActiveNode + ")"
	}
	fmt.Fprintf(c.stdout, "group %s: active at %s, token %d, mode %s, %s\nsites in priority order: %s\n",
		d.Name, at, d.Token, d.Mode, armed, strings.Join(d.Sites, ", "))
	if p := d.Pending; p != nil {
		fmt.Fprintf(c.stdout, "switchover to %s pending since %s: %s is being fenced at token %d; the move commits once the fence holds\n",
			p.To, p.Since.Format(time.RFC3339), d.ActiveSite, d.Token)
	}
	if p := d.Scheduled; p != nil {
		fmt.Fprintf(c.stdout, "switchover to %s scheduled for %s (in %s) by %s: %s; cancel with: witnessctl switchover --cancel %s\n",
			p.To, p.At.Format(time.RFC3339), time.Until(p.At).Round(time.Second), p.By, p.Reason, d.Name)
	}
	if p := d.LastScheduled; p != nil && p.Ended != nil && time.Since(*p.Ended) < 24*time.Hour {
		fmt.Fprintf(c.stdout, "last scheduled switchover (to %s for %s, by %s): %s\n", p.To, p.At.Format(time.RFC3339), p.By, p.Outcome)
	}
	if p := d.Proposal; p != nil {
		fmt.Fprintf(c.stdout, "proposal (%s): %s -> %s at token %d: %s\n", p.Action, p.From, p.To, p.ExpectedToken, p.Reason)
		if p.Action == "pending" {
			fmt.Fprintf(c.stdout, "  approve with: witnessctl switchover %s %s --token %d\n", d.Name, p.To, p.ExpectedToken)
		}
	}
	if e := d.Explanation; e != nil {
		fmt.Fprintf(c.stdout, "\npolicy (as %s sees it): %s: %s\n", e.EvaluatedBy, e.Action, e.Reason)
		var rows [][]string
		for _, s := range e.Sites {
			for _, o := range s.Observers {
				since := "-"
				if !o.Since.IsZero() {
					since = time.Since(o.Since).Round(100*time.Millisecond).String() + " ago"
				}
				site := s.Site
				if s.Active {
					site += " (active)"
				}
				rows = append(rows, []string{site, o.Site, o.State, since, strconv.Itoa(int(o.Witnesses))})
			}
		}
		c.table("SITE\tSEEN FROM\tSTATE\tSINCE\tWITNESSES", rows)
		var dbRows [][]string
		for _, s := range e.Sites {
			if s.Role == "" && s.PrimaryWAL == "" {
				continue
			}
			site := s.Site
			if s.Active {
				site += " (active)"
			}
			tli := "-"
			if s.Timeline != 0 {
				tli = strconv.FormatUint(uint64(s.Timeline), 10)
			}
			state := "-"
			if s.Role != "primary" {
				state = "not streaming"
				if s.Streaming {
					state = "streaming"
				}
			}
			role := s.Role
			if role == "" {
				role, state = "unseen", "-"
			}
			if len(s.Nodes) == 0 {
				dbRows = append(dbRows, []string{site, role, tli, dash(s.WAL), dash(s.Replayed), dash(s.PrimaryWAL), state})
				continue
			}
			// A site with several nodes: one row each, then where the
			// site's primary was last seen.
			for _, n := range s.Nodes {
				dbRows = append(dbRows, nodeRow(s.Site, n, s.Active && n.Name == d.ActiveNode))
			}
			if s.PrimaryWAL != "" {
				dbRows = append(dbRows, []string{site, "-", "-", "-", "-", s.PrimaryWAL, "-"})
			}
		}
		if len(dbRows) > 0 {
			fmt.Fprintln(c.stdout, "\ndatabases:")
			c.table("SITE\tROLE\tTIMELINE\tWAL\tREPLAYED\tPRIMARY LAST SEEN\tRECEIVER", dbRows)
		}
		if e.Targets > 0 {
			fmt.Fprintf(c.stdout, "\neligible targets: %d\n", e.Targets)
		} else {
			fmt.Fprintf(c.stdout, "\neligible targets: none: %s\n", e.NoTarget)
		}
	}
	if len(d.History) > 0 {
		fmt.Fprintln(c.stdout, "\nhistory:")
		var rows [][]string
		for _, h := range d.History {
			kind := h.Kind
			if h.Phase != "" {
				kind += " (" + h.Phase + ")"
			}
			if h.OldSiteDown {
				kind += " (old site attested down)"
			}
			if h.Forced {
				kind += " (data-loss guard overridden: " + h.Guard + ")"
			}
			rows = append(rows, []string{h.At.Format(time.RFC3339), strconv.FormatUint(h.Token, 10), kind, dash(h.From) + " -> " + h.To, dash(h.By), h.Reason})
		}
		c.table("AT\tTOKEN\tKIND\tMOVE\tBY\tREASON", rows)
	}
	if len(d.Steps) > 0 {
		fmt.Fprintln(c.stdout, "\nsteps:")
		var rows [][]string
		for _, s := range d.Steps {
			rows = append(rows, []string{strconv.FormatUint(s.Token, 10), s.Step, strconv.Itoa(int(s.Attempt)), fmt.Sprintf("%dms", s.DurationMS), dash(s.Node), stepResult(s)})
		}
		c.table("TOKEN\tSTEP\tATTEMPT\tTOOK\tNODE\tRESULT", rows)
	}
	return nil
}

// activeSites is the repeatable --active GROUP=SITE flag.
type activeSites map[string]string

func (a activeSites) String() string {
	var parts []string
	for g, s := range a {
		parts = append(parts, g+"="+s)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func (a activeSites) Set(v string) error {
	g, s, ok := strings.Cut(v, "=")
	if !ok || g == "" || s == "" {
		return fmt.Errorf("%q: want GROUP=SITE", v)
	}
	if _, dup := a[g]; dup {
		return fmt.Errorf("group %q given twice", g)
	}
	a[g] = s
	return nil
}

func (c *cli) apply(args []string) error {
	var file string
	var dry bool
	active := activeSites{}
	if _, err := c.flags("apply", "apply -f FILE [--dry-run] [--active GROUP=SITE ...]", args, func(fs *flag.FlagSet) {
		fs.StringVar(&file, "f", "", "YAML `file` of groups (- for stdin)")
		fs.BoolVar(&dry, "dry-run", false, "validate and show what would change, apply nothing")
		fs.Var(active, "active", "for a group the file creates, the `GROUP=SITE` whose database is the primary (repeatable); by default the one site found to hold an unfenced primary")
	}, 0); err != nil {
		return err
	}
	if file == "" {
		fmt.Fprintln(c.stderr, "witnessctl apply: -f FILE is required")
		return errUsage
	}
	var doc []byte
	var err error
	if file == "-" {
		doc, err = io.ReadAll(c.stdin)
	} else {
		doc, err = os.ReadFile(file)
	}
	if err != nil {
		return err
	}
	var resp *witnessv1.ApplyGroupsResponse
	if err := c.call(func(ctx context.Context, cl witnessv1.AdminClient) (err error) {
		resp, err = cl.ApplyGroups(ctx, &witnessv1.ApplyGroupsRequest{Document: doc, DryRun: dry, By: who(), ActiveSites: active})
		return err
	}); err != nil {
		return err
	}
	type change struct {
		Name   string `json:"name"`
		Change string `json:"change"`
	}
	out := struct {
		Applied  bool     `json:"applied"`
		Changes  []change `json:"changes"`
		Warnings []string `json:"warnings,omitempty"`
	}{Applied: resp.GetApplied(), Warnings: resp.GetWarnings()}
	for _, ch := range resp.GetChanges() {
		out.Changes = append(out.Changes, change{ch.GetName(), strings.ToLower(strings.TrimPrefix(ch.GetChange().String(), "CHANGE_KIND_"))})
	}
	if c.g.output == "json" {
		return c.printJSON(out)
	}
	verb := "applied"
	if dry {
		verb = "would apply (dry run)"
	}
	for _, ch := range out.Changes {
		fmt.Fprintf(c.stdout, "%s: group %s %s\n", verb, ch.Name, ch.Change)
	}
	for _, w := range out.Warnings {
		fmt.Fprintf(c.stderr, "warning: %s\n", w)
	}
	return nil
}

func (c *cli) delete(args []string) error {
	pos, err := c.flags("delete", "delete NAME", args, nil, 1)
	if err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl witnessv1.AdminClient) error {
		_, err := cl.DeleteGroup(ctx, &witnessv1.DeleteGroupRequest{Name: pos[0], By: who()})
		if err == nil {
			fmt.Fprintf(c.stdout, "deleted group %s\n", pos[0])
		}
		return err
	})
}

func (c *cli) call(f func(context.Context, witnessv1.AdminClient) error) error {
	cl, done, err := c.client()
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := c.ctx()
	defer cancel()
	return f(ctx, cl)
}

func (c *cli) switchover(args []string) error {
	var token uint64
	var reason, at string
	var wait time.Duration
	var cancel bool
	pos, err := c.flags("switchover", "switchover GROUP SITE [--at TIME] [--token N] [--reason TEXT] [--wait D] | switchover --cancel GROUP [--reason TEXT]", args, func(fs *flag.FlagSet) {
		fs.Uint64Var(&token, "token", 0, "the token you expect the group to hold (default: its current token)")
		fs.StringVar(&reason, "reason", "", "why, for the history")
		fs.DurationVar(&wait, "wait", 2*time.Minute, "how long to wait for the old site's fence and the move (0: return once started)")
		fs.StringVar(&at, "at", "", "start it later instead: a time (2026-12-01T02:00:00Z, RFC 3339) or a delay from now (+30m); it waits in the cluster's state and survives a leader change")
		fs.BoolVar(&cancel, "cancel", false, "cancel GROUP's scheduled switchover (one asked with --at, not yet started)")
	}, -1)
	if err != nil {
		return err
	}
	if cancel {
		if len(pos) != 1 || at != "" || token != 0 {
			fmt.Fprintln(c.stderr, "witnessctl switchover --cancel: give the group alone: witnessctl switchover --cancel GROUP [--reason TEXT]")
			return errUsage
		}
		return c.call(func(ctx context.Context, cl witnessv1.AdminClient) error {
			resp, err := cl.CancelSwitchover(ctx, &witnessv1.CancelSwitchoverRequest{Group: pos[0], Reason: reason, By: who()})
			if err != nil {
				return err
			}
			if c.g.output == "json" {
				return c.printJSON(map[string]any{"group": pos[0], "cancelled": toScheduled(resp.GetCancelled())})
			}
			fmt.Fprintf(c.stdout, "group %s: scheduled switchover to %s at %s cancelled\n", pos[0], resp.GetCancelled().GetToSite(),
				time.Unix(0, resp.GetCancelled().GetAtUnixNano()).UTC().Format(time.RFC3339))
			return nil
		})
	}
	if len(pos) != 2 {
		fmt.Fprintf(c.stderr, "witnessctl switchover: want 2 argument(s), got %d\n", len(pos))
		return errUsage
	}
	if at != "" {
		when, err := parseAt(at, time.Now())
		if err != nil {
			fmt.Fprintf(c.stderr, "witnessctl switchover --at: %v\n", err)
			return errUsage
		}
		return c.call(func(ctx context.Context, cl witnessv1.AdminClient) error {
			resp, err := cl.Switchover(ctx, &witnessv1.SwitchoverRequest{Group: pos[0], ToSite: pos[1], Reason: reason, By: who(), AtUnixNano: when.UnixNano()})
			if err != nil {
				return err
			}
			sch := resp.GetScheduled()
			if sch == nil {
				// The time had passed when the leader took it: started.
				fmt.Fprintf(c.stdout, "group %s: switchover %s -> %s started at token %d (its time had come)\n", pos[0], resp.GetFromSite(), pos[1], resp.GetToken())
				return nil
			}
			if c.g.output == "json" {
				return c.printJSON(map[string]any{"group": pos[0], "scheduled": toScheduled(sch)})
			}
			fmt.Fprintf(c.stdout, "group %s: switchover %s -> %s scheduled for %s; the leader then starts it if %s is a target (witnessctl group %s shows it; witnessctl switchover --cancel %s cancels it)\n",
				pos[0], resp.GetFromSite(), pos[1], when.UTC().Format(time.RFC3339), pos[1], pos[0], pos[0])
			return nil
		})
	}
	return c.call(func(ctx context.Context, cl witnessv1.AdminClient) error {
		return c.switchoverAndWait(ctx, cl, pos[0], pos[1], token, reason, wait)
	})
}

// parseAt reads --at: an RFC 3339 time, or a delay from now written +D.
// A time that has passed is refused: a switchover meant for now needs no
// --at.
func parseAt(s string, now time.Time) (time.Time, error) {
	var at time.Time
	if d, ok := strings.CutPrefix(s, "+"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: a delay such as +30m or +2h: %w", s, err)
		}
		at = now.Add(dur)
	} else {
		var err error
		if at, err = time.Parse(time.RFC3339, s); err != nil {
			return time.Time{}, fmt.Errorf("%q: an RFC 3339 time such as 2026-12-01T02:00:00Z, or a delay such as +30m", s)
		}
	}
	if !at.After(now) {
		return time.Time{}, fmt.Errorf("%q has passed (now %s): leave out --at to switch over now", s, now.UTC().Format(time.RFC3339))
	}
	return at, nil
}

// switchoverAndWait starts a switchover and, unless wait is zero, waits
// for its move or its abort.
func (c *cli) switchoverAndWait(ctx context.Context, cl witnessv1.AdminClient, group, to string, token uint64, reason string, wait time.Duration) error {
	if token == 0 {
		g, err := cl.GetGroup(ctx, &witnessv1.GetGroupRequest{Name: group})
		if err != nil {
			return err
		}
		token = g.GetGroup().GetStatus().GetToken()
	}
	resp, err := cl.Switchover(ctx, &witnessv1.SwitchoverRequest{Group: group, ToSite: to, ExpectedToken: token, Reason: reason, By: who()})
	if err != nil {
		return err
	}
	from, started := resp.GetFromSite(), resp.GetToken()
	if c.g.output != "json" {
		fmt.Fprintf(c.stdout, "group %s: switchover %s -> %s started at token %d: fencing %s first\n", group, from, to, started, from)
	}
	if wait <= 0 {
		if c.g.output == "json" {
			return c.printJSON(map[string]any{"group": group, "from_site": from, "to_site": to, "token": started, "state": "started"})
		}
		return nil
	}
	// The move commits once the old site is fenced; a fence that keeps
	// failing ends the switchover at a new token at the old site.
	wctx, wcancel := context.WithTimeout(context.Background(), wait)
	defer wcancel()
	for {
		g, err := cl.GetGroup(wctx, &witnessv1.GetGroupRequest{Name: group})
		if err != nil {
			return fmt.Errorf("wait for the switchover: %w", err)
		}
		st := g.GetGroup().GetStatus()
		if st.GetToken() > started {
			var last *witnessv1.Transition
			for _, h := range st.GetHistory() {
				if h.GetToken() == started+1 {
					last = h
				}
			}
			state, moved := "moved", last.GetPhase() == "" && last.GetToSite() == to
			if !moved {
				state = "not moved"
			}
			if c.g.output == "json" {
				if err := c.printJSON(map[string]any{"group": group, "from_site": from, "to_site": to, "token": started + 1,
					"state": state, "active_site": last.GetToSite(), "reason": last.GetReason()}); err != nil {
					return err
				}
			} else if moved {
				fmt.Fprintf(c.stdout, "group %s: %s -> %s, token %d\n", group, from, to, started+1)
			}
			if !moved {
				return fmt.Errorf("group %s: %s: now active at %s, token %d: %s", group, state, last.GetToSite(), started+1, last.GetReason())
			}
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("group %s: switchover started at token %d still waits for the fence of %s after %s (see witnessctl group %s)", group, started, from, wait, group)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// failoverHelp is the long help of witnessctl failover.
const failoverHelp = `failover GROUP SITE --reason TEXT [--force] [--old-site-down] [--yes] [--token N] [--wait D]

Moves GROUP to SITE at once, for when its active site is lost. Unlike a
switchover, which fences the old site while the group stays there and
gives up when the fence fails, a failover moves first and then decides
when SITE may be promoted:

  - once the old site's database is fenced (demoted by a witness there,
    or fenced over SQL by the leader), or
  - once a quorum of voters reports that every witness of the old site
    has gone without a lease for fence_after plus the margin, so the site
    has fenced itself.

A site with no witness of its own has no lease to prove anything. When
it cannot be fenced either (it is unreachable), only an operator who knows
it is down (powered off, its network cut at the switch) can let SITE be
promoted: --old-site-down, with --reason saying how you know. The
attestation, who made it and when are kept in the group's history
(witnessctl group GROUP); the promote step then shows the rule
old_site_down. If the old site is in fact still up and writable, both
sites take writes: be sure.

Without --old-site-down the move waits at the promote step until a fence
or the lease allows it (witnessctl group shows why). Refused for the
active site, a site not of the group, and while a switchover is pending.
The group's arming and mode are left as they are.

--reason is required: it goes into the group's history with who asked.
SITE must pass the data-loss guard: its database holds WAL within
max_lag of the last position the old primary was seen at. --force
overrides the guard, accepting the loss of what SITE never received; the
override and what the guard said are recorded with the transition.
--force and --old-site-down are separate: one accepts lost writes, the
other lets SITE be promoted without a confirmed fence.

On a terminal, failover shows what may be lost and asks for
confirmation; --yes skips the question (for scripts).`

func (c *cli) failover(args []string) error {
	var token uint64
	var reason string
	var oldSiteDown, force, yes bool
	var wait time.Duration
	pos, err := c.flags("failover", failoverHelp, args, func(fs *flag.FlagSet) {
		fs.BoolVar(&oldSiteDown, "old-site-down", false, "attest that the old site is down: SITE may be promoted without a confirmed fence (needs --reason)")
		fs.BoolVar(&force, "force", false, "override the data-loss guard: accept losing what SITE has not received")
		fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
		fs.StringVar(&reason, "reason", "", "why, for the history (required); with --old-site-down, how you know the old site is down")
		fs.Uint64Var(&token, "token", 0, "the token you expect the group to hold (default: its current token)")
		fs.DurationVar(&wait, "wait", 2*time.Minute, "how long to wait for SITE to be promoted (0: return once the move is committed)")
	}, 2)
	if err != nil {
		return err
	}
	if oldSiteDown && strings.TrimSpace(reason) == "" {
		fmt.Fprintln(c.stderr, "witnessctl failover: --old-site-down needs --reason: say how you know the old site is down")
		return errUsage
	}
	if strings.TrimSpace(reason) == "" {
		fmt.Fprintln(c.stderr, "witnessctl failover: --reason is required: say why, for the group's history")
		return errUsage
	}
	group, to := pos[0], pos[1]
	return c.call(func(ctx context.Context, cl witnessv1.AdminClient) error {
		if !yes {
			if err := c.confirmFailover(ctx, cl, group, to, force, oldSiteDown); err != nil {
				return err
			}
		}
		resp, err := cl.Failover(ctx, &witnessv1.FailoverRequest{Group: group, ToSite: to, ExpectedToken: token, Reason: reason, By: who(),
			OldSiteDown: oldSiteDown, Force: force})
		if err != nil {
			return err
		}
		from, moved := resp.GetFromSite(), resp.GetToken()
		if c.g.output != "json" {
			attested := ""
			if oldSiteDown {
				attested = " (old site attested down)"
			}
			fmt.Fprintf(c.stdout, "group %s: failover %s -> %s at token %d%s\n", group, from, to, moved, attested)
		}
		promoted, rule, err := c.waitPromoted(cl, group, moved, wait)
		if c.g.output == "json" {
			if jerr := c.printJSON(map[string]any{"group": group, "from_site": from, "to_site": to, "token": moved,
				"old_site_down": oldSiteDown, "promoted": promoted, "rule": rule}); jerr != nil {
				return jerr
			}
		} else if promoted {
			fmt.Fprintf(c.stdout, "group %s: %s promoted (%s)\n", group, to, rule)
		}
		return err
	})
}

// errNotConfirmed: the operator did not confirm a failover.
var errNotConfirmed = errors.New("failover not confirmed: nothing changed")

// confirmFailover shows what a failover of group to site may lose and
// asks the operator to confirm on the terminal. Without a terminal it
// refuses: a script says --yes.
func (c *cli) confirmFailover(ctx context.Context, cl witnessv1.AdminClient, group, to string, force, oldSiteDown bool) error {
	if !stdinIsTerminal(c.stdin) {
		return fmt.Errorf("failover of %s to %s needs confirmation: run it on a terminal, or pass --yes", group, to)
	}
	g, err := cl.GetGroup(ctx, &witnessv1.GetGroupRequest{Name: group})
	if err != nil {
		return err
	}
	from := g.GetGroup().GetStatus().GetActiveSite()
	fmt.Fprintf(c.stderr, "Failover of %s from %s to %s.\n", group, from, to)
	var active, target *witnessv1.SiteView
	for _, s := range g.GetExplanation().GetSites() {
		switch s.GetSite() {
		case from:
			active = s
		case to:
			target = s
		}
	}
	if active.GetPrimaryLsn() != 0 || target.GetWalLsn() != 0 {
		fmt.Fprintf(c.stderr, "  %s's primary last seen at %s; %s holds %s", from, dash(lsn(active.GetPrimaryLsn())), to, dash(lsn(target.GetWalLsn())))
		if p, w := active.GetPrimaryLsn(), target.GetWalLsn(); p > w && w != 0 {
			fmt.Fprintf(c.stderr, ": %d bytes of WAL committed at %s may be lost", p-w, from)
		}
		fmt.Fprintln(c.stderr)
	}
	if force {
		fmt.Fprintln(c.stderr, "  --force: the data-loss guard is overridden; what the guard refuses is lost.")
	}
	if oldSiteDown {
		fmt.Fprintf(c.stderr, "  --old-site-down: %s is promoted without a confirmed fence of %s; if %s still takes writes, both sites do.\n", to, from, from)
	}
	fmt.Fprintf(c.stderr, "Type the group's name (%s) to confirm: ", group)
	line, _ := bufio.NewReader(c.stdin).ReadString('\n')
	if strings.TrimSpace(line) != group {
		return errNotConfirmed
	}
	return nil
}

// stdinIsTerminal reports whether witnessctl may ask on stdin; a test
// replaces it.
var stdinIsTerminal = isTerminal

// isTerminal reports whether r is a character device (a terminal).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// waitPromoted waits, up to wait, until the promote step of group at token
// succeeds (or the group has no promote step), and says by which rule.
func (c *cli) waitPromoted(cl witnessv1.AdminClient, group string, token uint64, wait time.Duration) (bool, string, error) {
	if wait <= 0 {
		return false, "", nil
	}
	wctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	why := ""
	for {
		g, err := cl.GetGroup(wctx, &witnessv1.GetGroupRequest{Name: group})
		if err != nil {
			return false, "", fmt.Errorf("wait for the promotion: %w", err)
		}
		st := g.GetGroup().GetStatus()
		if st.GetToken() != token {
			return false, "", fmt.Errorf("group %s moved on to token %d while waiting", group, st.GetToken())
		}
		if g.GetGroup().GetSpec().GetActions().GetPostgres() == nil {
			return true, "no database", nil
		}
		for _, s := range st.GetSteps() {
			if s.GetToken() != token || s.GetStep() != "promote" {
				continue
			}
			if s.GetOk() {
				return true, s.GetRule(), nil
			}
			why = s.GetError()
		}
		select {
		case <-wctx.Done():
			return false, "", fmt.Errorf("group %s: not promoted after %s: %s (see witnessctl group %s)", group, wait, dash(why), group)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *cli) mode(args []string) error {
	pos, err := c.flags("mode", "mode GROUP auto|manual|observe", args, nil, 2)
	if err != nil {
		return err
	}
	m, ok := parseMode(pos[1])
	if !ok {
		fmt.Fprintf(c.stderr, "witnessctl mode: %q: want auto, manual or observe\n", pos[1])
		return errUsage
	}
	return c.call(func(ctx context.Context, cl witnessv1.AdminClient) error {
		_, err := cl.SetMode(ctx, &witnessv1.SetModeRequest{Group: pos[0], Mode: m, By: who()})
		if err == nil {
			fmt.Fprintf(c.stdout, "group %s: mode %s\n", pos[0], pos[1])
		}
		return err
	})
}

func (c *cli) arm(cmd string, args []string) error {
	pos, err := c.flags(cmd, cmd+" GROUP", args, nil, 1)
	if err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl witnessv1.AdminClient) error {
		_, err := cl.SetArmed(ctx, &witnessv1.SetArmedRequest{Group: pos[0], Armed: cmd == "arm", By: who()})
		if err == nil {
			fmt.Fprintf(c.stdout, "group %s: %sed\n", pos[0], cmd)
		}
		return err
	})
}

func (c *cli) members(args []string) error {
	if len(args) > 0 && args[0] == "add" {
		var site, raftAddr, gossipAddr string
		pos, err := c.flags("members add", "members add NAME --raft-addr ADDR [--site SITE] [--gossip-addr ADDR]", args[1:], func(fs *flag.FlagSet) {
			fs.StringVar(&site, "site", "", "the new member's site")
			fs.StringVar(&raftAddr, "raft-addr", "", "the new member's Raft address (required)")
			fs.StringVar(&gossipAddr, "gossip-addr", "", "the new member's gossip address")
		}, 1)
		if err != nil {
			return err
		}
		if raftAddr == "" {
			fmt.Fprintln(c.stderr, "witnessctl members add: --raft-addr is required")
			return errUsage
		}
		return c.call(func(ctx context.Context, cl witnessv1.AdminClient) error {
			_, err := cl.AddMember(ctx, &witnessv1.AddMemberRequest{Name: pos[0], Site: site, RaftAddress: raftAddr, GossipAddress: gossipAddr})
			if err == nil {
				fmt.Fprintf(c.stdout, "added member %s at %s\n", pos[0], raftAddr)
			}
			return err
		})
	}
	if len(args) > 0 && args[0] == "remove" {
		pos, err := c.flags("members remove", "members remove NAME", args[1:], nil, 1)
		if err != nil {
			return err
		}
		return c.call(func(ctx context.Context, cl witnessv1.AdminClient) error {
			_, err := cl.RemoveMember(ctx, &witnessv1.RemoveMemberRequest{Name: pos[0]})
			if err == nil {
				fmt.Fprintf(c.stdout, "removed member %s\n", pos[0])
			}
			return err
		})
	}
	if _, err := c.flags("members", "members [add|remove] [-o json]", args, nil, 0); err != nil {
		return err
	}
	return c.call(func(ctx context.Context, cl witnessv1.AdminClient) error {
		st, err := cl.Status(ctx, &witnessv1.StatusRequest{})
		if err != nil {
			return err
		}
		ms := []memberJSON{}
		for _, m := range st.GetMembers() {
			ms = append(ms, toMember(m))
		}
		if c.g.output == "json" {
			return c.printJSON(ms)
		}
		c.memberTable(ms)
		return nil
	})
}
