package policy_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/sitewitness/witness/policy"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the scripts in testdata/")

// TestScripts runs the policy scenarios written as scripts in testdata/
// (the commands are described in testdata/README.md). With -rewrite it
// writes what Evaluate returns as their expected output.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata/")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) { runScript(t, file) })
	}
}

// runScript runs one script. Its lines are commands, one a line; an
// `evaluate` is followed by a `----` line and its expected output, which
// ends at a blank line.
func runScript(t *testing.T, file string) {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	var out strings.Builder // the script as rewritten
	s := newScript()
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		out.WriteString(line + "\n")
		cmd := strings.TrimSpace(line)
		if cmd == "" || strings.HasPrefix(cmd, "#") {
			continue
		}
		pos := fmt.Sprintf("%s:%d", file, i+1)
		if f := strings.Fields(cmd); f[0] != "evaluate" {
			if err := s.do(f); err != nil {
				t.Fatalf("%s: %s: %v", pos, cmd, err)
			}
			continue
		}
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s: evaluate without a ---- line after it", pos)
		}
		i++
		var want []string
		for i+1 < len(lines) && lines[i+1] != "" {
			i++
			want = append(want, lines[i])
		}
		got := s.evaluate(strings.Fields(cmd)[1:])
		if diff := s.withoutViewsDiff(); diff != "" {
			t.Errorf("%s: the evaluation without views decides otherwise (-full +without views):\n%s", pos, diff)
		}
		out.WriteString("----\n")
		for _, l := range got {
			out.WriteString(l + "\n")
		}
		if !*rewrite {
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: scenario %q (-want +got):\n%s", pos, s.name, diff)
			}
		}
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// script is the state a script builds up: the evaluation's input.
type script struct {
	name  string
	in    policy.Input
	sites map[string]string // witness -> site
}

func newScript() *script {
	return &script{in: policy.Input{Now: now}, sites: map[string]string{}}
}

func (s *script) do(f []string) error {
	args := f[1:]
	switch f[0] {
	case "scenario":
		// A new scenario starts from nothing but the witnesses' sites.
		sites := s.sites
		*s = *newScript()
		s.name, s.sites = strings.Join(args, " "), sites
	case "witnesses":
		// witnesses SITE NAME...
		if len(args) < 2 {
			return fmt.Errorf("want a site and witness names")
		}
		for _, n := range args[1:] {
			s.sites[n] = args[0]
		}
	case "observer-sites":
		s.in.ObserverSites = args
	case "live":
		s.in.Live = nil
		for _, n := range args {
			site, ok := s.sites[n]
			if !ok {
				return fmt.Errorf("witness %s has no site (see `witnesses`)", n)
			}
			s.in.Live = append(s.in.Live, policy.Witness{Name: n, Site: site})
		}
	case "stale-after":
		d, err := time.ParseDuration(one(args))
		s.in.StaleAfter = d
		return err
	case "advance":
		d, err := time.ParseDuration(one(args))
		s.in.Now = s.in.Now.Add(d)
		return err
	case "group":
		g, err := s.group(args)
		if err != nil {
			return err
		}
		s.in.Groups = append(s.in.Groups, g)
	case "see":
		return s.see(args)
	case "db":
		return s.db(args)
	case "primary-seen":
		return s.primarySeen(args)
	case "primary-recorded":
		return s.primaryRecorded(args)
	default:
		return fmt.Errorf("unknown command %q", f[0])
	}
	return nil
}

func one(args []string) string {
	if len(args) != 1 {
		return ""
	}
	return args[0]
}

// kv splits "key=value" arguments; a bare word has the value "".
func kv(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		m[k] = v
	}
	return m
}

// group NAME sites=A,B,... [token=N] [mode=auto|observe|manual]
// [failover-after=D] [postgres] [max-lag-bytes=N] [max-lag=D]
// [rearm=auto|manual] [hold-down=D] [switching-over=AGO]
// [switchover-aborted=AGO] [failed-over=AGO] [disarmed-at=N]
// [no-status] [active-node=NODE]; NAME "-" is a group with no spec, active at sites' first.
func (s *script) group(args []string) (*witnessv1.Group, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("want a name")
	}
	o := kv(args[1:])
	sites := strings.Split(o["sites"], ",")
	if o["sites"] == "" {
		return nil, fmt.Errorf("want sites=")
	}
	if args[0] == "-" {
		return &witnessv1.Group{Status: &witnessv1.GroupStatus{ActiveSite: sites[0]}}, nil
	}
	token := uint64(1)
	if v, ok := o["token"]; ok {
		var err error
		if token, err = strconv.ParseUint(v, 10, 64); err != nil {
			return nil, err
		}
	}
	var opts []groupOpt
	dur := func(k string) (time.Duration, error) {
		d, err := time.ParseDuration(o[k])
		if err != nil {
			return 0, fmt.Errorf("%s: %w", k, err)
		}
		return d, nil
	}
	for k := range o {
		if !slices.Contains(groupOptions, k) {
			return nil, fmt.Errorf("unknown group option %q", k)
		}
	}
	for _, k := range groupOptions {
		v, ok := o[k]
		if !ok {
			continue
		}
		switch k {
		case "sites", "token", "hold-down":
		case "active-node":
			opts = append(opts, func(g *witnessv1.Group) { g.Status.ActiveNode = v })
		case "mode":
			m, ok := map[string]witnessv1.Mode{"auto": witnessv1.Mode_MODE_AUTO, "observe": witnessv1.Mode_MODE_OBSERVE, "manual": witnessv1.Mode_MODE_MANUAL}[v]
			if !ok {
				return nil, fmt.Errorf("mode %q", v)
			}
			opts = append(opts, withMode(m))
		case "failover-after":
			d, err := dur(k)
			if err != nil {
				return nil, err
			}
			opts = append(opts, func(g *witnessv1.Group) { g.Spec.Policy.FailoverAfterMs = d.Milliseconds() })
		case "postgres":
			opts = append(opts, withPostgres())
		case "max-lag-bytes":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, err
			}
			opts = append(opts, func(g *witnessv1.Group) { g.Spec.Policy.MaxLagBytes = n })
		case "max-lag":
			d, err := dur(k)
			if err != nil {
				return nil, err
			}
			opts = append(opts, func(g *witnessv1.Group) { g.Spec.Policy.MaxLagMs = d.Milliseconds() })
		case "rearm":
			r, ok := map[string]witnessv1.Rearm{"auto": witnessv1.Rearm_REARM_AUTO, "manual": witnessv1.Rearm_REARM_MANUAL}[v]
			if !ok {
				return nil, fmt.Errorf("rearm %q", v)
			}
			hold := time.Duration(0)
			if _, ok := o["hold-down"]; ok {
				var err error
				if hold, err = dur("hold-down"); err != nil {
					return nil, err
				}
			}
			opts = append(opts, withRearm(r, hold))
		case "switching-over", "switchover-aborted":
			d, err := dur(k)
			if err != nil {
				return nil, err
			}
			opts = append(opts, map[string]func(time.Duration) groupOpt{"switching-over": switchingOver, "switchover-aborted": switchoverAborted}[k](d))
		case "failed-over":
			d, err := dur(k)
			if err != nil {
				return nil, err
			}
			opts = append(opts, failedOver(d))
		case "disarmed-at":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, err
			}
			opts = append(opts, func(g *witnessv1.Group) { g.Status.Armed, g.Status.DisarmedAtToken = false, n })
		case "no-status":
			opts = append(opts, func(g *witnessv1.Group) { g.Status = nil })
		}
	}
	g := group(args[0], token, sites)
	for _, opt := range opts {
		opt(g)
	}
	return g, nil
}

// groupOptions are the options of `group`, in the order they apply,
// whatever their order on the line.
var groupOptions = []string{"sites", "token", "mode", "failover-after", "postgres", "max-lag-bytes", "max-lag",
	"switching-over", "switchover-aborted", "failed-over", "rearm", "hold-down", "disarmed-at", "no-status", "active-node"}

// see OBSERVER,... GROUP SITE healthy|failing|unknown FOR [checked=AGO]:
// each observer has seen the site so for FOR, checked AGO before now
// (default 500ms).
func (s *script) see(args []string) error {
	if len(args) < 5 {
		return fmt.Errorf("want observers, group, site, state and how long")
	}
	st, ok := map[string]policy.State{"healthy": policy.Healthy, "failing": policy.Failing, "unknown": policy.Unknown}[args[3]]
	if !ok {
		return fmt.Errorf("state %q", args[3])
	}
	held, err := time.ParseDuration(args[4])
	if err != nil {
		return err
	}
	checked := 500 * time.Millisecond
	for k, v := range kv(args[5:]) {
		switch k {
		case "checked":
			if checked, err = time.ParseDuration(v); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown option %q", k)
		}
	}
	for _, o := range strings.Split(args[0], ",") {
		s.in.Observations = append(s.in.Observations, policy.Observation{
			Observer: o, ObserverSite: s.sites[o], Group: args[1], Site: args[2], State: st,
			Since: s.in.Now.Add(-held), CheckedAt: s.in.Now.Add(-checked),
		})
	}
	return nil
}

// primary-seen GROUP SITE LSN [tli=N]: some witness once saw SITE's
// primary at LSN (Input.Primaries), on timeline N (default 1).
func (s *script) primarySeen(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("want group, site and position")
	}
	lsn, err := parseLSN(args[2])
	if err != nil {
		return err
	}
	p := policy.Position{Timeline: 1, WAL: lsn, At: s.in.Now.Add(-time.Minute)}
	if v, ok := kv(args[3:])["tli"]; ok {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return err
		}
		p.Timeline = uint32(n)
	}
	if s.in.Primaries == nil {
		s.in.Primaries = map[policy.GroupSite]policy.Position{}
	}
	s.in.Primaries[policy.GroupSite{Group: args[0], Site: args[1]}] = p
	return nil
}

// primary-recorded GROUP SITE LSN [tli=N]: the group's status (Raft)
// holds SITE's primary at LSN, on timeline N (default 1), as a transition,
// proposal or fence recorded it.
func (s *script) primaryRecorded(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("want group, site and position")
	}
	lsn, err := parseLSN(args[2])
	if err != nil {
		return err
	}
	p := &witnessv1.PrimaryPosition{Site: args[1], Timeline: 1, WalLsn: lsn, AtUnixNano: s.in.Now.Add(-time.Hour).UnixNano()}
	if v, ok := kv(args[3:])["tli"]; ok {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return err
		}
		p.Timeline = uint32(n)
	}
	for _, g := range s.in.Groups {
		if g.GetSpec().GetName() == args[0] {
			g.Status.Primaries = append(g.Status.Primaries, p)
			return nil
		}
	}
	return fmt.Errorf("no group %q", args[0])
}

// parseLSN reads a WAL position written as PostgreSQL does (0/3A000000).
func parseLSN(v string) (uint64, error) {
	hi, lo, ok := strings.Cut(v, "/")
	if !ok {
		return 0, fmt.Errorf("position %q: want HI/LO", v)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, err
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, err
	}
	return h<<32 | l, nil
}

// db OBSERVER,... GROUP SITE [primary] [lag-bytes=N] [lag=SECONDS]
// [streaming] [wal=LSN] [replayed=LSN] [tli=N]: a fresh database observation, healthy for an hour, of a
// standby (or a primary).
func (s *script) db(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("want observers, group and site")
	}
	for _, o := range strings.Split(args[0], ",") {
		ob := policy.Observation{
			Observer: o, ObserverSite: s.sites[o], Group: args[1], Site: args[2], State: policy.Healthy,
			Since: s.in.Now.Add(-time.Hour), CheckedAt: s.in.Now.Add(-500 * time.Millisecond),
			IsDatabase: true, Role: "standby",
		}
		for k, v := range kv(args[3:]) {
			var err error
			switch k {
			case "primary":
				ob.Role = "primary"
			case "streaming":
				ob.Streaming = true
			case "lag-bytes":
				ob.LagBytes, err = strconv.ParseInt(v, 10, 64)
			case "lag":
				ob.LagSeconds, err = strconv.ParseFloat(v, 64)
			case "wal":
				ob.WAL, err = parseLSN(v)
			case "replayed":
				ob.Replayed, err = parseLSN(v)
			case "tli":
				var n uint64
				n, err = strconv.ParseUint(v, 10, 32)
				ob.Timeline = uint32(n)
			case "node":
				ob.Node = v
			case "failing":
				ob.State = policy.Failing
			default:
				err = fmt.Errorf("unknown option %q", k)
			}
			if err != nil {
				return err
			}
		}
		s.in.Observations = append(s.in.Observations, ob)
	}
	return nil
}

// evaluate [views] [targets] runs the policy and prints, one a line, the proposals,
// every group's decision (by name), the groups to re-arm, the wake time
// relative to now, with `views`, who sees each site of each group how, and
// with `targets`, how many sites could take each group over now.
func (s *script) evaluate(args []string) []string {
	out := policy.Evaluate(s.in)
	var lines []string
	for _, p := range out.Proposals {
		var moves []string
		for _, m := range p.GetMoves() {
			to := m.GetToSite()
			if m.GetToNode() != "" {
				to += "/" + m.GetToNode()
			}
			moves = append(moves, fmt.Sprintf("%s@%d→%s", m.GetGroup(), m.GetExpectedToken(), to))
		}
		kind := strings.ToLower(strings.TrimPrefix(p.GetKind().String(), "TRANSITION_KIND_"))
		lines = append(lines, fmt.Sprintf("propose %s %s: %s", kind, strings.Join(moves, " "), p.GetReason()))
	}
	names := make([]string, 0, len(out.Decisions))
	for name := range out.Decisions {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		d := out.Decisions[name]
		line := name + ": " + d.Action.String()
		if d.To != "" {
			to := d.To
			if d.ToNode != "" {
				to += "/" + d.ToNode
			}
			line += fmt.Sprintf(" %s→%s@%d", d.From, to, d.ExpectedToken)
		}
		lines = append(lines, line+": "+d.Reason)
		if slices.Contains(args, "targets") {
			t := fmt.Sprintf("  targets: %d", d.Targets)
			if d.NoTarget != "" {
				t += ": " + d.NoTarget
			}
			lines = append(lines, t)
		}
		if !slices.Contains(args, "views") {
			continue
		}
		for _, v := range d.Sites {
			var obs []string
			for _, o := range v.Observers {
				w := fmt.Sprintf("%s=%s", o.Site, o.State)
				if !o.Since.IsZero() {
					w += " for " + s.in.Now.Sub(o.Since).String()
				}
				obs = append(obs, fmt.Sprintf("%s (%d)", w, o.Witnesses))
			}
			active := ""
			if v.Active {
				active = " (active)"
			}
			lines = append(lines, fmt.Sprintf("  %s%s: %s", v.Site, active, strings.Join(obs, ", ")))
			for _, n := range v.Nodes {
				lines = append(lines, fmt.Sprintf("    %s: %s tli %d wal %s replayed %s streaming=%t failing=%t", n.Name, n.Role, n.Timeline,
					policy.FormatLSN(n.WAL), policy.FormatLSN(n.Replayed), n.Streaming, n.Failing))
			}
		}
	}
	if len(out.Rearm) > 0 {
		lines = append(lines, "rearm "+strings.Join(out.Rearm, " "))
	}
	if !out.Wake.IsZero() {
		lines = append(lines, "wake in "+out.Wake.Sub(s.in.Now).String())
	}
	return lines
}

// withoutViewsDiff compares the evaluation without the per-site views
// (Input.DecisionsOnly, as the leader's loop evaluates) with the full one:
// the same decisions, without Sites.
func (s *script) withoutViewsDiff() string {
	want := policy.Evaluate(s.in)
	for name, d := range want.Decisions {
		d.Sites = nil
		want.Decisions[name] = d
	}
	in := s.in
	in.DecisionsOnly = true
	return cmp.Diff(want, policy.Evaluate(in), protocmp.Transform())
}
