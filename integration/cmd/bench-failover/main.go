// Command bench-failover measures how long Witness takes to fail over a
// lost site, on real processes in network namespaces (see package
// harness). Each run builds a fresh environment, cuts east off from every
// other site (its processes keep running, as in a network outage), and
// records two
// moments: when the failover was committed through Raft, and when BIND
// first answered the west address. It prints, per variant, the p50, p90
// and max of both, and of both minus failover_after (what Witness adds).
//
// Variants: "leader survives" (the leader is at west or tiebreak) and
// "leader's site lost" (the leader is moved to east first), both by a
// network cut, and "old primary killed": east's witness and postmaster
// SIGKILLed and its service down, the leader elsewhere.
//
// Needs root and `make deps`; run with `make bench-failover` (RUNS=N).
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sitewitness/witness/integration/harness"
)

type sample struct {
	commit, dns time.Duration
	rule        string // what allowed the promotion
}

func main() {
	runs := flag.Int("runs", 10, "runs per variant")
	variants := flag.String("variants", "survives,lost,killed", "comma-separated: survives (leader outside east), lost (leader at east), killed (east's witness and database SIGKILLed)")
	verbose := flag.Bool("v", false, "print the harness's progress")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: bench-failover [flags]\n\nMeasures outage → failover committed and outage → DNS switched at BIND\non real witnessd, BIND and PostgreSQL in network namespaces (root).\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	bin, err := os.MkdirTemp("", "bench-failover-bin-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(bin)
	if err := harness.Build(bin); err != nil {
		fail(err)
	}
	opts := harness.Options{Bin: bin}
	if *verbose {
		opts.Logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, "  "+f+"\n", a...) }
	}
	var settings string
	results := map[string][]sample{}
	names := strings.Split(*variants, ",")
	for _, v := range names {
		if v != "survives" && v != "lost" && v != "killed" {
			fail(fmt.Errorf("unknown variant %q", v))
		}
		for i := range *runs {
			s, o, err := once(opts, v)
			if err != nil {
				fail(fmt.Errorf("%s run %d: %w", v, i+1, err))
			}
			settings = fmt.Sprintf("probe interval %s, fail_threshold %d, failover_after %s, fence_after %s, raft heartbeat/election %s/%s, DNS TTL %ds",
				o.ProbeInterval, o.FailThreshold, o.FailoverAfter, o.FenceAfter, o.HeartbeatTimeout, o.ElectionTimeout, o.TTL)
			fmt.Fprintf(os.Stderr, "%s run %d: committed %s, DNS %s, promoted by %s\n", v, i+1, ms(s.commit), ms(s.dns), s.rule)
			results[v] = append(results[v], s)
		}
	}
	fmt.Printf("settings: %s\n\n", settings)
	fmt.Printf("%-20s %-28s %8s %8s %8s\n", "variant", "measure", "p50", "p90", "max")
	after := opts.FailoverAfter
	if after == 0 {
		after = 5 * time.Second
	}
	for _, v := range names {
		label := map[string]string{"survives": "leader survives", "lost": "leader's site lost", "killed": "old primary killed"}[v]
		var commit, dns []time.Duration
		rules := map[string]int{}
		for _, s := range results[v] {
			commit, dns = append(commit, s.commit), append(dns, s.dns)
			rules[s.rule]++
		}
		defer fmt.Printf("%-20s promoted by: %v\n", label, rules)
		row(label, "outage → committed", commit, 0)
		row(label, "  minus failover_after", commit, after)
		row(label, "outage → DNS at BIND", dns, 0)
		row(label, "  minus failover_after", dns, after)
	}
}

// once runs one failover and returns its timings.
func once(opts harness.Options, variant string) (s sample, o harness.Options, err error) {
	leaderAtEast := variant == "lost"
	env, err := harness.Start(opts)
	if err != nil {
		return sample{}, opts, err
	}
	defer func() {
		if cerr := env.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close the environment: %w", cerr)
		}
	}()
	if leaderAtEast {
		if _, err := env.LeadFrom("east", 2*time.Minute); err != nil {
			return sample{}, env.Opts, err
		}
		if err := env.WaitHealthy(2 * time.Minute); err != nil {
			return sample{}, env.Opts, err
		}
	} else if l, err := env.Leader(); err != nil {
		return sample{}, env.Opts, err
	} else if l.Site == "east" {
		if _, err := env.LeadFrom("west", 2*time.Minute); err != nil {
			return sample{}, env.Opts, err
		}
		if err := env.WaitHealthy(2 * time.Minute); err != nil {
			return sample{}, env.Opts, err
		}
	}
	g, err := env.Group()
	if err != nil {
		return sample{}, env.Opts, err
	}
	before := g.GetStatus().GetToken()
	outage := time.Now()
	if variant == "killed" {
		if err := env.ServiceDown("east", true); err != nil {
			return sample{}, env.Opts, err
		}
		err = env.KillSite("east")
	} else {
		err = env.Isolate("east")
	}
	if err != nil {
		return sample{}, env.Opts, err
	}
	if err := env.WaitStable(2*time.Minute, "west", before+1); err != nil {
		return sample{}, env.Opts, err
	}
	if g, err = env.Group(); err != nil {
		return sample{}, env.Opts, err
	}
	fo := harness.Failovers(g, before)
	if len(fo) != 1 {
		return sample{}, env.Opts, fmt.Errorf("%d failovers, want one", len(fo))
	}
	switched, ok := env.DNS.FirstAt("west", outage)
	if !ok {
		return sample{}, env.Opts, fmt.Errorf("BIND never answered west")
	}
	if bad := append(env.DNS.Check(), env.Writes.Check()...); len(bad) > 0 {
		return sample{}, env.Opts, fmt.Errorf("invariants: %s", strings.Join(bad, "; "))
	}
	return sample{commit: time.Unix(0, fo[0].GetAtUnixNano()).Sub(outage), dns: switched.Sub(outage),
		rule: harness.StepResult(g, "promote").GetRule()}, env.Opts, nil
}

func row(variant, measure string, ds []time.Duration, minus time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	pick := func(q float64) time.Duration {
		if len(s) == 0 {
			return 0
		}
		i := int(q*float64(len(s))+0.5) - 1
		return s[min(max(i, 0), len(s)-1)] - minus
	}
	fmt.Printf("%-20s %-28s %8s %8s %8s\n", variant, measure, ms(pick(0.5)), ms(pick(0.9)), ms(pick(1)))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench-failover:", err)
	os.Exit(1)
}
