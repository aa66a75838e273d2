package cluster

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/dns"
	"github.com/sitewitness/witness/actions/dns/zoneserver"
	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// hookLine is what the test hooks append to their log: who ran them, and
// what they were told.
const hookLine = `echo "$WITNESS_GROUP $WITNESS_NODE $WITNESS_SITE $WITNESS_STEP $WITNESS_TOKEN $WITNESS_FROM>$WITNESS_TO" >> `

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// stepResults returns the results of one step of a group at a token.
func stepResults(n *Node, group string, token uint64, step string) []*witnessv1.StepResult {
	g, _ := n.FSM().Group(group)
	var out []*witnessv1.StepResult
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetToken() == token && s.GetStep() == step {
			out = append(out, s)
		}
	}
	return out
}

func stepOK(n *Node, group string, token uint64, step string) bool {
	return slices.ContainsFunc(stepResults(n, group, token, step), (*witnessv1.StepResult).GetOk)
}

// TestHooksOnNamedSites runs a group's hooks through the cluster: the
// leader asks a witness at the hook's run_on site to run it, that witness
// takes the command from its own replica and refuses stale or misdirected
// requests, and a site without a live witness is a failed, retried step.
// The same group's DNS records are kept in step by the periodic check.
func TestHooksOnNamedSites(t *testing.T) {
	regs := make([]*prometheus.Registry, 3)
	tc := newTestClusterWith(t, func(i int, o *Options) {
		regs[i] = prometheus.NewRegistry()
		o.Registerer = regs[i]
		// The test names the leader that runs the leader's hooks: on a
		// busy machine the default 150ms heartbeat loses it mid-test.
		o.Config.Raft.HeartbeatTimeout = config.Duration(time.Second)
		o.Config.Raft.ElectionTimeout = config.Duration(time.Second)
		o.Config.Raft.LeaderLeaseTimeout = config.Duration(500 * time.Millisecond)
	}, "east", "west", "tiebreak")
	_, leader := tc.leader()
	// remote is a site of the group whose witness does not lead.
	remote := "east"
	if leader.Site() == remote {
		remote = "west"
	}
	sites := []string{remote}
	for _, s := range []string{"east", "west", "tiebreak"} {
		if s != remote {
			sites = append(sites, s)
		}
	}
	ri := slices.IndexFunc(tc.cfgs, func(c config.Node) bool { return c.Site == remote })
	remoteNode, leaderNode := tc.cfgs[ri].Name, leader.Name()

	secret := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	dir := t.TempDir()
	keyFile, log := filepath.Join(dir, "tsig.key"), filepath.Join(dir, "hooks.log")
	if err := os.WriteFile(keyFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	zs, err := zoneserver.New(zoneserver.Config{Zone: "example.test.", Keys: map[string]string{"witness.": secret}})
	if err != nil {
		t.Fatal(err)
	}
	if err := zs.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zs.Close() })

	hook := func(name, step, runOn, extra string) string {
		return fmt.Sprintf("        - {name: %s, step: %s, command: sh, args: [-c, '%s%s'], timeout: 5s, run_on: %s%s}\n", name, step, hookLine, log, runOn, extra)
	}
	applyDoc(t, leader, fmt.Sprintf(`
groups:
  - name: app
    sites:
      - {name: %[1]s, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: %[2]s, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
      - {name: %[3]s, probes: [{kind: tcp, address: "127.0.0.1:3"}]}
    policy: {mode: observe}
    actions:
      dns:
        server: %[4]s
        zone: example.test.
        tsig: {name: witness, secret_file: %[5]s}
        check_every: 1s
        records: [{name: app.example.test., ttl: 1, values: {%[1]s: 192.0.2.1, %[2]s: 192.0.2.2, %[3]s: 192.0.2.3}}]
      hooks:
`, sites[0], sites[1], sites[2], zs.Addr(), keyFile)+
		hook("stop-old", "fence", remote, "")+
		hook("warm", "promote", "leader", "")+
		hook("start", "after_switch", remote, "")+
		hook("audit", "after_switch", leader.Site(), ", best_effort: true")+
		"        - {name: local, step: local_fence, command: 'true'}\n")

	g, _ := leader.FSM().Group("app")
	t1 := g.GetStatus().GetToken()
	eventually(t, "the plan of the new group", func() bool { return stepOK(leader, "app", t1, actions.StepSettle) })
	t2 := switchover(t, leader, "app", sites[1])
	eventually(t, "the plan of the switchover", func() bool { return stepOK(leader, "app", t2, actions.StepSettle) })
	at := func(node, site, step string, tok uint64, from, to string) string {
		return fmt.Sprintf("app %s %s %s %d %s>%s", node, site, step, tok, from, to)
	}
	want := []string{
		at(leaderNode, leader.Site(), "promote", t1, "", remote),
		at(remoteNode, remote, "after_switch", t1, "", remote),
		at(leaderNode, leader.Site(), "after_switch", t1, "", remote),
		at(remoteNode, remote, "fence", t2, remote, sites[1]),
		at(leaderNode, leader.Site(), "promote", t2, remote, sites[1]),
		at(remoteNode, remote, "after_switch", t2, remote, sites[1]),
		at(leaderNode, leader.Site(), "after_switch", t2, remote, sites[1]),
	}
	if diff := cmp.Diff(want, readLines(t, log)); diff != "" {
		t.Errorf("hook runs: node site step token from>to (-want +got):\n%s", diff)
	}

	t.Run("the site's witness refuses what its replica does not back", func(t *testing.T) {
		c := dial(t, tc.nodes[ri].AdminAddr())
		tests := []struct {
			name string
			req  *witnessv1.RunHookRequest
			code codes.Code
		}{
			{"token replaced since", &witnessv1.RunHookRequest{Group: "app", Hook: "stop-old", Token: t1, Step: "fence", Leader: leaderNode}, codes.FailedPrecondition},
			{"not from its leader", &witnessv1.RunHookRequest{Group: "app", Hook: "stop-old", Token: t2, Step: "fence", Leader: "intruder"}, codes.FailedPrecondition},
			{"hook of another step", &witnessv1.RunHookRequest{Group: "app", Hook: "stop-old", Token: t2, Step: "promote", Leader: leaderNode}, codes.FailedPrecondition},
			{"hook of another site", &witnessv1.RunHookRequest{Group: "app", Hook: "warm", Token: t2, Step: "promote", Leader: leaderNode}, codes.FailedPrecondition},
			{"local_fence hook", &witnessv1.RunHookRequest{Group: "app", Hook: "local", Token: t2, Step: "local_fence", Leader: leaderNode}, codes.FailedPrecondition},
			{"unknown hook", &witnessv1.RunHookRequest{Group: "app", Hook: "rm-rf", Token: t2, Step: "fence", Leader: leaderNode}, codes.NotFound},
			{"no token", &witnessv1.RunHookRequest{Group: "app", Hook: "stop-old", Step: "fence", Leader: leaderNode}, codes.InvalidArgument},
		}
		for _, tt := range tests {
			if _, err := c.RunHook(ctx(t), tt.req); status.Code(err) != tt.code {
				t.Errorf("%s: %v, want %s", tt.name, err, tt.code)
			}
		}
		if n := len(readLines(t, log)); n != len(want) {
			t.Errorf("a refused request ran a hook: %d lines, want %d", n, len(want))
		}
	})

	t.Run("DNS edited by hand is put back and counted", func(t *testing.T) {
		edit := new(mdns.Msg)
		edit.SetUpdate("example.test.")
		edit.RemoveRRset([]mdns.RR{&mdns.ANY{Hdr: mdns.RR_Header{Name: "app.example.test.", Rrtype: mdns.TypeA}}})
		rr, _ := mdns.NewRR("app.example.test. 60 IN A 203.0.113.66")
		edit.Insert([]mdns.RR{rr})
		edit.SetTsig("witness.", mdns.HmacSHA256, 300, time.Now().Unix())
		if resp, _, err := (&mdns.Client{Net: "tcp", TsigSecret: map[string]string{"witness.": secret}}).Exchange(edit, zs.Addr()); err != nil || resp.Rcode != mdns.RcodeSuccess {
			t.Fatalf("hand edit: %v %v", resp, err)
		}
		client := &dns.Client{Server: zs.Addr(), Zone: "example.test."}
		eventually(t, "the record to be put back", func() bool {
			a, err := client.Read(context.Background(), dns.Record{Name: "app.example.test.", Type: "A"})
			return err == nil && a.Token == t2 && a.Site == sites[1] && slices.Equal(a.Values, []string{"192.0.2.2"}) && a.TTL == 1
		})
		// Counted by whichever witness led when the check ran: on a
		// loaded machine leadership may have moved since the test began.
		counted := -1
		for i, n := range tc.nodes {
			if n != nil && n.metrics.driftOf("app") >= 1 {
				counted = i
			}
		}
		if counted < 0 {
			t.Fatalf("witness_dns_drift_total{group=app} = 0 on every witness")
		}
		if n, err := testutil.GatherAndCount(regs[counted], "witness_dns_drift_total"); err != nil || n != 1 {
			t.Errorf("witness_dns_drift_total series gathered: %d, %v", n, err)
		}
	})

	t.Run("no live witness at the site", func(t *testing.T) {
		tc.stop(ri)
		eventually(t, "gossip to see the witness gone", func() bool {
			ms, _ := leader.Members()
			return !slices.ContainsFunc(ms, func(m Member) bool { return m.Site == remote && m.Alive })
		})
		err := leader.RunHook(ctx(t), remote, actions.HookRequest{Group: "app", Hook: "start", Step: "after_switch", Token: t2})
		if !errors.Is(err, ErrNoSiteWitness) {
			t.Errorf("RunHook on a site without a witness: %v, want ErrNoSiteWitness", err)
		}
		t3 := switchover(t, leader, "app", sites[2])
		eventually(t, "the required hook to fail twice", func() bool { return len(stepResults(leader, "app", t3, "hook:after_switch:start")) >= 2 })
		for _, step := range []string{"hook:fence:stop-old", "hook:after_switch:start"} {
			for _, r := range stepResults(leader, "app", t3, step) {
				if r.GetOk() || !strings.Contains(r.GetError(), ErrNoSiteWitness.Error()) {
					t.Errorf("%s recorded ok=%v %q, want a failure for want of a witness", step, r.GetOk(), r.GetError())
				}
			}
		}
		// The best-effort fence hook did not hold up the plan; the
		// required after_switch hook holds up settle.
		for _, step := range []string{"hook:promote:warm", actions.StepDNS} {
			if !stepOK(leader, "app", t3, step) {
				t.Errorf("step %s not done at token %d", step, t3)
			}
		}
		if stepOK(leader, "app", t3, "hook:after_switch:audit") || len(stepResults(leader, "app", t3, actions.StepSettle)) > 0 {
			t.Error("steps after the failing required hook ran")
		}
	})
}
