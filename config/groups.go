package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Group defaults.
const (
	DefaultProbeInterval    = time.Second
	DefaultProbeTimeout     = 800 * time.Millisecond
	DefaultFailThreshold    = 3
	DefaultRecoverThreshold = 2
	DefaultFailoverAfter    = 10 * time.Second
	DefaultFenceAfter       = 5 * time.Second
	DefaultHoldDown         = 10 * time.Minute
	// DefaultSwitchoverTimeout bounds a switchover's wait for the target to
	// replay the fenced primary's final position.
	DefaultSwitchoverTimeout = 30 * time.Second
	DefaultHookTimeout       = 30 * time.Second
	DefaultDNSCheckEvery     = 30 * time.Second
	DefaultTSIGAlgorithm     = "hmac-sha256"
)

// GroupsDoc is a document of group specs, as `witnessctl apply -f` sends it.
type GroupsDoc struct {
	Groups []Group `yaml:"groups"`
}

// Group is one protected service.
type Group struct {
	Name    string  `yaml:"name"`
	Sites   []Site  `yaml:"sites"` // in priority order
	Policy  Policy  `yaml:"policy"`
	Actions Actions `yaml:"actions"`
}

// Site is one candidate site of a group and the probes that tell whether
// the group works there.
type Site struct {
	Name   string  `yaml:"name"`
	Probes []Probe `yaml:"probes"`
}

// Probe is one check of a group at a site.
type Probe struct {
	Kind             string   `yaml:"kind"`
	Interval         Duration `yaml:"interval"`
	Timeout          Duration `yaml:"timeout"`
	FailThreshold    int      `yaml:"fail_threshold"`
	RecoverThreshold int      `yaml:"recover_threshold"`

	URL          string   `yaml:"url"`           // http
	ExpectStatus []int    `yaml:"expect_status"` // http: [min, max], default [200, 399]
	BodyContains string   `yaml:"body_contains"` // http
	CAFile       string   `yaml:"ca_file"`       // http
	Address      string   `yaml:"address"`       // tcp
	Server       string   `yaml:"server"`        // dns
	Name         string   `yaml:"name"`          // dns: the name to query
	Type         string   `yaml:"type"`          // dns: record type, default A
	Expect       string   `yaml:"expect"`        // dns: one answer must equal this
	DSN          string   `yaml:"dsn"`           // postgres
	Node         string   `yaml:"node"`          // postgres: a node of actions.postgres.nodes, whose dsn it probes
	Role         string   `yaml:"role"`          // postgres: primary, standby, or empty for either
	Command      string   `yaml:"command"`       // exec
	Args         []string `yaml:"args"`          // exec
}

// Policy says when and how a group fails over.
type Policy struct {
	Mode          string   `yaml:"mode"` // auto, manual, observe
	FailoverAfter Duration `yaml:"failover_after"`
	FenceAfter    Duration `yaml:"fence_after"`
	// FenceTimeout is how long the local demotion of the group's database
	// may take before its postmaster is killed.
	FenceTimeout Duration `yaml:"fence_timeout"`
	Rearm        string   `yaml:"rearm"` // manual, auto
	HoldDown     Duration `yaml:"hold_down"`
	MaxLag       ByteSize `yaml:"max_lag"`
	MaxLagTime   Duration `yaml:"max_lag_time"`
	// SwitchoverTimeout bounds how long a switchover waits, with the old
	// primary fenced, for the target to replay its final position.
	SwitchoverTimeout Duration `yaml:"switchover_timeout"`
}

// Actions are what the leader does on a transition.
type Actions struct {
	DNS      *DNS      `yaml:"dns"`
	Postgres *Postgres `yaml:"postgres"`
	Hooks    []Hook    `yaml:"hooks"`
	Notify   []Notify  `yaml:"notify"`
}

// DNS switches records by RFC 2136 updates, fenced by the group's token.
type DNS struct {
	Server  string      `yaml:"server"`
	Zone    string      `yaml:"zone"`
	TSIG    TSIG        `yaml:"tsig"`
	Records []DNSRecord `yaml:"records"`
	// CheckEvery is how often the leader re-reads the records of a group
	// whose plan has completed and corrects hand edits.
	CheckEvery Duration `yaml:"check_every"`
}

// TSIG names the key that signs updates; the secret is read from a file.
type TSIG struct {
	Name       string `yaml:"name"`
	Algorithm  string `yaml:"algorithm"`
	SecretFile string `yaml:"secret_file"`
}

// DNSRecord is one record whose value follows the active site.
type DNSRecord struct {
	Name   string            `yaml:"name"`
	Type   string            `yaml:"type"`
	TTL    uint32            `yaml:"ttl"`
	Values map[string]string `yaml:"values"` // site -> rdata
}

// Postgres promotes the standby at the new site and fences the old primary.
type Postgres struct {
	DSN map[string]string `yaml:"dsn"` // site -> DSN
	// Fence is FenceSQL (the default; FenceReadOnly is its old name) or
	// FenceNone.
	Fence string `yaml:"fence"`
	// Roles are the application roles whose logins the SQL fence blocks
	// and promotion restores.
	Roles []string `yaml:"roles"`
	// DataDir is, per site, the data directory that the site's own witness
	// demotes locally.
	DataDir map[string]string `yaml:"data_dir"`
	// PGCtl is the pg_ctl binary of the local demotion; empty means the
	// default one.
	PGCtl string `yaml:"pg_ctl"`
	// DemoteCommand, when set, stops the database instead of pg_ctl: argv,
	// no shell.
	DemoteCommand []string `yaml:"demote_command"`
	// Reinstate is manual (the default: witnessctl reinstate) or auto (the
	// leader reinstates the old primary as a standby after a move).
	Reinstate string `yaml:"reinstate"`
	// SaveDir is, per site, where a reinstate saves the WAL past the fork;
	// empty means the data_dir followed by "-witness-saved".
	SaveDir map[string]string `yaml:"save_dir"`
	// ReplicationDSN is, per site, how the other sites' nodes reach this
	// one for pg_rewind and streaming; empty means DSN.
	ReplicationDSN map[string]string `yaml:"replication_dsn"`
	// Nodes lists every node of a group with several at a site, instead
	// of DSN, DataDir and ReplicationDSN.
	Nodes []PostgresNode `yaml:"nodes"`
}

// PostgresNode is one PostgreSQL node of a group with several at a site.
type PostgresNode struct {
	Name string `yaml:"name"`
	Site string `yaml:"site"`
	DSN  string `yaml:"dsn"`
	// DataDir is the data directory the site's witness demotes locally;
	// at most one node per site has one.
	DataDir string `yaml:"data_dir"`
	// ReplicationDSN is how the other nodes reach this one for pg_rewind
	// and streaming; empty means DSN.
	ReplicationDSN string `yaml:"replication_dsn"`
}

// Hook steps: where in a transition a hook runs.
const (
	HookFence       = "fence"        // after the old site's database is fenced
	HookPromote     = "promote"      // after the database promote, before DNS
	HookAfterSwitch = "after_switch" // after the DNS switch
	HookLocalFence  = "local_fence"  // by the self-fencing lease at the isolated active site
)

// RunOnLeader is the run_on value of a hook run by the leader itself.
const RunOnLeader = "leader"

// Hook runs a command at a step of a transition.
type Hook struct {
	Name    string   `yaml:"name"`
	Step    string   `yaml:"step"` // fence, promote, after_switch, local_fence
	Command string   `yaml:"command"`
	Args    []string `yaml:"args"`
	Timeout Duration `yaml:"timeout"`
	RunOn   string   `yaml:"run_on"` // leader (default) or a site of the group; none for local_fence
	// BestEffort: a failure does not hold up later steps. Default true
	// for fence hooks (the old site may be down), false for the others.
	BestEffort *bool `yaml:"best_effort"`
}

// Notify tells people about a transition.
type Notify struct {
	Kind         string   `yaml:"kind"` // webhook, email
	URL          string   `yaml:"url"`
	SecretFile   string   `yaml:"secret_file"`
	SMTPServer   string   `yaml:"smtp_server"`
	From         string   `yaml:"from"`
	To           []string `yaml:"to"`
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
}

// ParseGroups is ParseGroupsWith(data, DefaultTiming()), for callers with
// no node configuration at hand.
func ParseGroups(data []byte) ([]*witnessv1.GroupSpec, error) {
	return ParseGroupsWith(data, DefaultTiming())
}

// ParseGroupsWith reads a document of group specs, fills defaults,
// validates it whole against itself and the node timing t (see
// Timing.Margin) and returns the specs for the replicated state. Any
// problem refuses the whole document: the error is Errors, every problem
// with its field path. A witness passes its own Node.Timing().
func ParseGroupsWith(data []byte, t Timing) ([]*witnessv1.GroupSpec, error) {
	var doc GroupsDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{Field: "groups", Err: fmt.Errorf("%w: the document is empty", ErrRequired)}}
		}
		if es := decodeErrors(data, reflect.TypeFor[GroupsDoc]()); len(es) > 0 {
			return nil, es
		}
		return nil, Errors{{Err: fmt.Errorf("%w: %s", ErrSyntax, err)}}
	}
	doc.SetDefaultsWith(t)
	if err := doc.ValidateWith(t); err != nil {
		return nil, err
	}
	out := make([]*witnessv1.GroupSpec, len(doc.Groups))
	for i := range doc.Groups {
		out[i] = doc.Groups[i].Proto()
	}
	return out, nil
}

// SetDefaults is SetDefaultsWith(DefaultTiming()).
func (d *GroupsDoc) SetDefaults() { d.SetDefaultsWith(DefaultTiming()) }

// SetDefaultsWith fills every value left out. The default fence_after is
// DefaultFenceAfter, at most half of failover_after, and less when the
// group's margin under t needs the room.
func (d *GroupsDoc) SetDefaultsWith(t Timing) {
	for gi := range d.Groups {
		g := &d.Groups[gi]
		for si := range g.Sites {
			for pi := range g.Sites[si].Probes {
				pr := &g.Sites[si].Probes[pi]
				if pr.Interval == 0 {
					pr.Interval = Duration(DefaultProbeInterval)
				}
				if pr.Timeout == 0 {
					pr.Timeout = Duration(min(DefaultProbeTimeout, pr.Interval.D()*8/10))
				}
				if pr.FailThreshold == 0 {
					pr.FailThreshold = DefaultFailThreshold
				}
				if pr.RecoverThreshold == 0 {
					pr.RecoverThreshold = DefaultRecoverThreshold
				}
				if pr.Kind == "http" && len(pr.ExpectStatus) == 0 {
					pr.ExpectStatus = []int{200, 399}
				}
				if pr.Kind == "dns" && pr.Type == "" {
					pr.Type = "A"
				}
			}
		}
		p := &g.Policy
		if p.Mode == "" {
			p.Mode = "auto"
		}
		if p.FailoverAfter == 0 {
			p.FailoverAfter = Duration(DefaultFailoverAfter)
		}
		if p.FenceAfter == 0 {
			p.FenceAfter = Duration(g.defaultFenceAfter(t))
		}
		if p.FenceTimeout == 0 {
			p.FenceTimeout = Duration(defaultFenceTimeout(p.FailoverAfter.D(), p.FenceAfter.D()))
		}
		if p.Rearm == "" {
			p.Rearm = "manual"
		}
		if p.SwitchoverTimeout == 0 {
			p.SwitchoverTimeout = Duration(DefaultSwitchoverTimeout)
		}
		if p.HoldDown == 0 {
			p.HoldDown = Duration(DefaultHoldDown)
		}
		if dns := g.Actions.DNS; dns != nil {
			if dns.TSIG.Algorithm == "" {
				dns.TSIG.Algorithm = DefaultTSIGAlgorithm
			}
			dns.Zone = fqdn(dns.Zone)
			if dns.CheckEvery == 0 {
				dns.CheckEvery = Duration(DefaultDNSCheckEvery)
			}
			for ri := range dns.Records {
				r := &dns.Records[ri]
				r.Name = fqdn(r.Name)
				r.Type = strings.ToUpper(r.Type)
				if r.Type == "" {
					r.Type = "A"
				}
			}
		}
		if pg := g.Actions.Postgres; pg != nil {
			pg.setDefaults()
		}
		for hi := range g.Actions.Hooks {
			h := &g.Actions.Hooks[hi]
			if h.Timeout == 0 {
				h.Timeout = Duration(DefaultHookTimeout)
			}
			if h.RunOn == "" && h.Step != HookLocalFence {
				h.RunOn = RunOnLeader
			}
			if h.BestEffort == nil {
				be := h.Step == HookFence || h.Step == HookLocalFence
				h.BestEffort = &be
			}
		}
	}
}

func fqdn(s string) string {
	if s == "" || strings.HasSuffix(s, ".") {
		return strings.ToLower(s)
	}
	return strings.ToLower(s) + "."
}

// Validate is ValidateWith(DefaultTiming()).
func (d *GroupsDoc) Validate() error { return d.ValidateWith(DefaultTiming()) }

// ValidateWith returns every problem of the document, each with its field
// path, or nil. Call SetDefaultsWith first, with the same timing.
func (d *GroupsDoc) ValidateWith(t Timing) error {
	var p problems
	if len(d.Groups) == 0 {
		p.add("groups", "", fmt.Errorf("%w: list at least one group", ErrRequired))
	}
	names := map[string]bool{}
	for gi := range d.Groups {
		g := &d.Groups[gi]
		f := fmt.Sprintf("groups[%d]", gi)
		checkName(&p, f+".name", g.Name)
		if names[g.Name] && g.Name != "" {
			p.add(f+".name", g.Name, ErrDuplicate)
		}
		names[g.Name] = true
		g.validate(&p, f, t)
	}
	return p.err()
}

func (g *Group) siteNames() map[string]bool {
	sites := make(map[string]bool, len(g.Sites))
	for _, s := range g.Sites {
		sites[s.Name] = true
	}
	return sites
}

func (g *Group) validate(p *problems, f string, t Timing) {
	if len(g.Sites) < 2 {
		p.addf(f+".sites", "", ErrRequired, "a group needs at least two candidate sites, in priority order")
	}
	seen := map[string]bool{}
	for si, s := range g.Sites {
		sf := fmt.Sprintf("%s.sites[%d]", f, si)
		checkName(p, sf+".name", s.Name)
		if seen[s.Name] && s.Name != "" {
			p.add(sf+".name", s.Name, ErrDuplicate)
		}
		seen[s.Name] = true
		if len(s.Probes) == 0 {
			p.addf(sf+".probes", s.Name, ErrRequired, "site has no probes")
		}
		for pi := range s.Probes {
			s.Probes[pi].validate(p, fmt.Sprintf("%s.probes[%d]", sf, pi))
		}
	}
	g.Policy.validate(p, f+".policy")
	g.validateMargin(p, f+".policy", t)
	sites := g.siteNames()
	a := &g.Actions
	if a.DNS != nil {
		a.DNS.validate(p, f+".actions.dns", sites)
	}
	if a.Postgres != nil {
		a.Postgres.validate(p, f+".actions.postgres", sites, g.postgresDSNs())
		g.validateNodeProbes(p, f)
	}
	hooks := map[string]bool{}
	for hi, h := range a.Hooks {
		hf := fmt.Sprintf("%s.actions.hooks[%d]", f, hi)
		h.validate(p, hf, sites)
		if hooks[h.Name] && h.Name != "" {
			p.add(hf+".name", h.Name, ErrDuplicate)
		}
		hooks[h.Name] = true
	}
	for ni, n := range a.Notify {
		n.validate(p, fmt.Sprintf("%s.actions.notify[%d]", f, ni))
	}
}

func (pr *Probe) validate(p *problems, f string) {
	if pr.Interval.D() < 50*time.Millisecond {
		p.addf(f+".interval", pr.Interval.String(), ErrInvalid, "at least 50ms")
	}
	if pr.Timeout.D() <= 0 || pr.Timeout.D() >= pr.Interval.D() {
		p.addf(f+".timeout", pr.Timeout.String(), ErrConflict, "must be above zero and below interval %s", pr.Interval)
	}
	if pr.FailThreshold < 1 {
		p.addf(f+".fail_threshold", fmt.Sprint(pr.FailThreshold), ErrInvalid, "at least 1")
	}
	if pr.RecoverThreshold < 1 {
		p.addf(f+".recover_threshold", fmt.Sprint(pr.RecoverThreshold), ErrInvalid, "at least 1")
	}
	switch pr.Kind {
	case "http":
		u, err := url.Parse(pr.URL)
		switch {
		case pr.URL == "":
			p.add(f+".url", "", ErrRequired)
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			p.addf(f+".url", pr.URL, ErrInvalid, "want an http:// or https:// URL")
		}
		if len(pr.ExpectStatus) != 2 || pr.ExpectStatus[0] < 100 || pr.ExpectStatus[1] > 599 || pr.ExpectStatus[0] > pr.ExpectStatus[1] {
			p.addf(f+".expect_status", fmt.Sprint(pr.ExpectStatus), ErrInvalid, "want [min, max] within 100 to 599")
		}
	case "tcp":
		checkAddr(p, f+".address", pr.Address, true)
	case "dns":
		checkAddr(p, f+".server", pr.Server, true)
		if pr.Name == "" {
			p.add(f+".name", "", ErrRequired)
		}
		if !validRRType(pr.Type) {
			p.addf(f+".type", pr.Type, ErrInvalid, "one of A, AAAA, CNAME, TXT, MX, NS, SOA, SRV")
		}
	case "postgres":
		if pr.DSN == "" && pr.Node == "" {
			p.addf(f+".dsn", "", ErrRequired, "give a dsn, or the node it probes")
		}
		if pr.Role != "" && pr.Role != "primary" && pr.Role != "standby" {
			p.addf(f+".role", pr.Role, ErrInvalid, "one of primary, standby, or leave it out for either (recommended: roles swap with every move)")
		}
	case "exec":
		if pr.Command == "" {
			p.add(f+".command", "", ErrRequired)
		}
	case "":
		p.add(f+".kind", "", ErrRequired)
	default:
		p.addf(f+".kind", pr.Kind, ErrUnknown, "one of http, tcp, dns, postgres, exec")
	}
}

func validRRType(t string) bool {
	switch strings.ToUpper(t) {
	case "A", "AAAA", "CNAME", "TXT", "MX", "NS", "SOA", "SRV":
		return true
	}
	return false
}

func (po *Policy) validate(p *problems, f string) {
	if po.Mode != "auto" && po.Mode != "manual" && po.Mode != "observe" {
		p.addf(f+".mode", po.Mode, ErrInvalid, "one of auto, manual, observe")
	}
	if po.Rearm != "manual" && po.Rearm != "auto" {
		p.addf(f+".rearm", po.Rearm, ErrInvalid, "one of manual, auto")
	}
	if po.FailoverAfter.D() < time.Second {
		p.addf(f+".failover_after", po.FailoverAfter.String(), ErrInvalid, "at least 1s")
	}
	if po.FenceAfter.D() <= 0 {
		p.addf(f+".fence_after", po.FenceAfter.String(), ErrInvalid, "must be above zero")
	}
	switch {
	case po.FenceTimeout.D() <= 0:
		p.addf(f+".fence_timeout", po.FenceTimeout.String(), ErrInvalid, "must be above zero")
	case po.FenceTimeout.D() >= po.FenceAfter.D():
		p.addf(f+".fence_timeout", po.FenceTimeout.String(), ErrConflict, "must be below fence_after %s", po.FenceAfter)
	}
	if po.HoldDown.D() < 0 {
		p.addf(f+".hold_down", po.HoldDown.String(), ErrInvalid, "must not be negative")
	}
	if po.MaxLagTime.D() < 0 {
		p.addf(f+".max_lag_time", po.MaxLagTime.String(), ErrInvalid, "must not be negative")
	}
	if po.SwitchoverTimeout.D() < 0 {
		p.addf(f+".switchover_timeout", po.SwitchoverTimeout.String(), ErrInvalid, "must not be negative")
	}
}

// defaultFenceAfter is DefaultFenceAfter, at most half of failover_after,
// and no more than the group's margin leaves before failover_after. When no
// positive value fits, it stays at the plain default and validation says
// why.
func (g *Group) defaultFenceAfter(t Timing) time.Duration {
	failoverAfter := g.Policy.FailoverAfter.D()
	fa := min(DefaultFenceAfter, failoverAfter/2)
	fenceLimit := g.Policy.FenceTimeout.D()
	if fenceLimit == 0 {
		fenceLimit = defaultFenceTimeout(failoverAfter, 0)
	}
	interval, timeout := g.maxProbeTiming()
	fixed := t.margin(interval, timeout, 0, fenceLimit).Total() - MinClockDrift
	if fa+fixed+ClockDrift(fa) <= failoverAfter {
		return fa
	}
	fit := ((failoverAfter - fixed) * 100 / (100 + ClockDriftPercent)).Truncate(time.Millisecond)
	for fit > 0 && fit+fixed+ClockDrift(fit) > failoverAfter {
		fit -= time.Millisecond
	}
	if fit <= 0 {
		return fa
	}
	return fit
}

// maxProbeTiming is the largest probe interval and the largest probe
// timeout of the group, as the replicated spec carries them.
func (g *Group) maxProbeTiming() (interval, timeout time.Duration) {
	for _, s := range g.Sites {
		for _, pr := range s.Probes {
			interval = max(interval, pr.Interval.D().Truncate(time.Millisecond))
			timeout = max(timeout, pr.Timeout.D().Truncate(time.Millisecond))
		}
	}
	return interval, timeout
}

// validateMargin checks that fence_after leaves the group's margin before
// failover_after, with the margin the cluster computes from the replicated
// spec.
func (g *Group) validateMargin(p *problems, f string, t Timing) {
	po := g.Policy
	if po.FenceAfter.D() <= 0 || po.FailoverAfter.D() < time.Second {
		return // reported by Policy.validate
	}
	spec := g.Proto()
	m := t.Margin(spec)
	fenceAfter := time.Duration(spec.GetPolicy().GetFenceAfterMs()) * time.Millisecond
	failoverAfter := time.Duration(spec.GetPolicy().GetFailoverAfterMs()) * time.Millisecond
	if failoverAfter-fenceAfter < m.Total() {
		p.add(f+".fence_after", "", &MarginError{FenceAfter: fenceAfter, FailoverAfter: failoverAfter, Margin: m})
	}
	if fit := t.WatchdogFit(); fit.Total() > 0 && fenceAfter < fit.Total() {
		p.add(f+".fence_after", "", &WatchdogError{FenceAfter: fenceAfter, Fit: fit})
	}
}

func (d *DNS) validate(p *problems, f string, sites map[string]bool) {
	checkAddr(p, f+".server", d.Server, true)
	if d.CheckEvery.D() < time.Second || d.CheckEvery.D() > 24*time.Hour {
		p.addf(f+".check_every", d.CheckEvery.String(), ErrInvalid, "1s to 24h")
	}
	if d.Zone == "" {
		p.add(f+".zone", "", ErrRequired)
	}
	if d.TSIG.Name == "" {
		p.add(f+".tsig.name", "", ErrRequired)
	}
	if d.TSIG.SecretFile == "" {
		p.add(f+".tsig.secret_file", "", ErrRequired)
	}
	switch d.TSIG.Algorithm {
	case "hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha1":
	default:
		p.addf(f+".tsig.algorithm", d.TSIG.Algorithm, ErrInvalid, "one of hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha1")
	}
	if len(d.Records) == 0 {
		p.add(f+".records", "", ErrRequired)
	}
	seen := map[string]bool{}
	for ri, r := range d.Records {
		rf := fmt.Sprintf("%s.records[%d]", f, ri)
		switch {
		case r.Name == "" || r.Name == ".":
			p.add(rf+".name", "", ErrRequired)
		case d.Zone != "" && r.Name != d.Zone && !strings.HasSuffix(r.Name, "."+d.Zone):
			p.addf(rf+".name", r.Name, ErrInvalid, "not inside zone %s", d.Zone)
		case strings.HasPrefix(r.Name, FencePrefix):
			p.addf(rf+".name", r.Name, ErrInvalid, "names under %s are Witness's fence records", FencePrefix)
		}
		if seen[r.Name+" "+r.Type] {
			p.add(rf+".name", r.Name, ErrDuplicate)
		}
		seen[r.Name+" "+r.Type] = true
		switch r.Type {
		case "A", "AAAA", "CNAME", "TXT":
		default:
			p.addf(rf+".type", r.Type, ErrInvalid, "one of A, AAAA, CNAME, TXT")
		}
		if r.TTL == 0 || r.TTL > 86400 {
			p.addf(rf+".ttl", fmt.Sprint(r.TTL), ErrInvalid, "1 to 86400 seconds")
		}
		for _, site := range slices.Sorted(maps.Keys(sites)) {
			if _, ok := r.Values[site]; !ok && site != "" {
				p.addf(rf+".values", site, ErrRequired, "every site of the group needs a value")
			}
		}
		for _, site := range slices.Sorted(maps.Keys(r.Values)) {
			v := r.Values[site]
			vf := rf + ".values." + site
			if !sites[site] {
				p.addf(vf, site, ErrUnknown, "not a site of the group")
				continue
			}
			ip := net.ParseIP(v)
			switch {
			case r.Type == "A" && (ip == nil || ip.To4() == nil):
				p.addf(vf, v, ErrInvalid, "want an IPv4 address")
			case r.Type == "AAAA" && (ip == nil || ip.To4() != nil):
				p.addf(vf, v, ErrInvalid, "want an IPv6 address")
			case r.Type == "CNAME" && v == "":
				p.add(vf, v, ErrRequired)
			}
		}
	}
}

func (h *Hook) validate(p *problems, f string, sites map[string]bool) {
	if h.Name == "" {
		p.add(f+".name", "", ErrRequired)
	}
	if h.Step == "" {
		p.add(f+".step", "", ErrRequired)
	}
	if h.Command == "" {
		p.add(f+".command", "", ErrRequired)
	}
	if h.Timeout.D() <= 0 {
		p.addf(f+".timeout", h.Timeout.String(), ErrInvalid, "must be above zero")
	}
	switch h.Step {
	case HookFence, HookPromote, HookAfterSwitch:
		if h.RunOn != RunOnLeader && !sites[h.RunOn] {
			p.addf(f+".run_on", h.RunOn, ErrUnknown, "want leader or a site of the group")
		}
	case HookLocalFence:
		if h.RunOn != "" {
			p.addf(f+".run_on", h.RunOn, ErrConflict, "a local_fence hook runs on the witnesses at the group's active site; leave run_on out")
		}
		if h.BestEffort != nil && !*h.BestEffort {
			p.addf(f+".best_effort", "false", ErrConflict, "a local_fence hook cannot hold anything up: its failure is logged and counted")
		}
	case "":
	default:
		p.addf(f+".step", h.Step, ErrInvalid, "one of fence, promote, after_switch, local_fence")
	}
}

func (n *Notify) validate(p *problems, f string) {
	switch n.Kind {
	case "webhook":
		if u, err := url.Parse(n.URL); n.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			p.addf(f+".url", n.URL, ErrInvalid, "want an http:// or https:// URL")
		}
	case "email":
		checkAddr(p, f+".smtp_server", n.SMTPServer, true)
		if n.From == "" {
			p.add(f+".from", "", ErrRequired)
		}
		if len(n.To) == 0 {
			p.add(f+".to", "", ErrRequired)
		}
	default:
		p.addf(f+".kind", n.Kind, ErrInvalid, "one of webhook, email")
	}
}

var modes = map[string]witnessv1.Mode{
	"auto": witnessv1.Mode_MODE_AUTO, "manual": witnessv1.Mode_MODE_MANUAL, "observe": witnessv1.Mode_MODE_OBSERVE,
}

// ParseMode reads "auto", "manual" or "observe".
func ParseMode(s string) (witnessv1.Mode, bool) {
	m, ok := modes[s]
	return m, ok
}

// Proto converts a validated group to the replicated spec.
func (g *Group) Proto() *witnessv1.GroupSpec {
	out := &witnessv1.GroupSpec{Name: g.Name}
	for _, s := range g.Sites {
		ss := &witnessv1.SiteSpec{Name: s.Name}
		for _, pr := range s.Probes {
			ps := &witnessv1.ProbeSpec{
				Kind: pr.Kind, IntervalMs: pr.Interval.D().Milliseconds(), TimeoutMs: pr.Timeout.D().Milliseconds(),
				FailThreshold: int32(pr.FailThreshold), RecoverThreshold: int32(pr.RecoverThreshold),
				Url: pr.URL, BodyContains: pr.BodyContains, CaFile: pr.CAFile,
				Address: pr.Address, Server: pr.Server, QueryName: pr.Name, QueryType: strings.ToUpper(pr.Type), Expect: pr.Expect,
				Dsn: pr.DSN, Role: pr.Role, Command: pr.Command, Args: pr.Args, Node: pr.Node,
			}
			if n := g.Actions.Postgres.node(pr.Node); n != nil && pr.DSN == "" {
				ps.Dsn = n.DSN
			}
			if len(pr.ExpectStatus) == 2 {
				ps.ExpectStatusMin, ps.ExpectStatusMax = int32(pr.ExpectStatus[0]), int32(pr.ExpectStatus[1])
			}
			ss.Probes = append(ss.Probes, ps)
		}
		out.Sites = append(out.Sites, ss)
	}
	po := g.Policy
	out.Policy = &witnessv1.Policy{
		Mode: modes[po.Mode], FailoverAfterMs: po.FailoverAfter.D().Milliseconds(), FenceAfterMs: po.FenceAfter.D().Milliseconds(), FenceTimeoutMs: po.FenceTimeout.D().Milliseconds(),
		Rearm: witnessv1.Rearm_REARM_MANUAL, HoldDownMs: po.HoldDown.D().Milliseconds(),
		MaxLagBytes: int64(po.MaxLag), MaxLagMs: po.MaxLagTime.D().Milliseconds(),
		SwitchoverTimeoutMs: po.SwitchoverTimeout.D().Milliseconds(),
	}
	if po.Rearm == "auto" {
		out.Policy.Rearm = witnessv1.Rearm_REARM_AUTO
	}
	out.Actions = &witnessv1.Actions{}
	if d := g.Actions.DNS; d != nil {
		da := &witnessv1.DNSAction{Server: d.Server, Zone: d.Zone, TsigKeyName: fqdn(d.TSIG.Name), TsigAlgorithm: d.TSIG.Algorithm, TsigSecretFile: d.TSIG.SecretFile,
			CheckEveryMs: d.CheckEvery.D().Milliseconds()}
		for _, r := range d.Records {
			da.Records = append(da.Records, &witnessv1.DNSRecord{Name: r.Name, Type: r.Type, Ttl: r.TTL, Values: r.Values})
		}
		out.Actions.Dns = da
	}
	if pg := g.Actions.Postgres; pg != nil {
		out.Actions.Postgres = &witnessv1.PostgresAction{
			Dsn: pg.DSN, Fence: pg.Fence, Roles: pg.Roles, DataDir: pg.DataDir, PgCtl: pg.PGCtl, DemoteCommand: pg.DemoteCommand,
			Reinstate: pg.Reinstate, SaveDir: pg.SaveDir, ReplicationDsn: pg.ReplicationDSN,
		}
		pg.nodesProto(out.Actions.Postgres)
	}
	for _, h := range g.Actions.Hooks {
		out.Actions.Hooks = append(out.Actions.Hooks, &witnessv1.HookAction{
			Name: h.Name, Step: h.Step, Command: h.Command, Args: h.Args, TimeoutMs: h.Timeout.D().Milliseconds(), RunOn: h.RunOn, BestEffort: h.BestEffort != nil && *h.BestEffort,
		})
	}
	for _, n := range g.Actions.Notify {
		out.Actions.Notify = append(out.Actions.Notify, &witnessv1.NotifyAction{
			Kind: n.Kind, Url: n.URL, SecretFile: n.SecretFile, SmtpServer: n.SMTPServer, From: n.From, To: n.To, Username: n.Username, PasswordFile: n.PasswordFile,
		})
	}
	return out
}
