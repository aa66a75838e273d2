package cluster

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/actionstest"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// The leader dies between promote and DNS: the next leader finishes the
// plan from the recorded step results, and no step runs twice.
func TestNewLeaderResumesPlanAfterLeaderDies(t *testing.T) {
	tc := newTestCluster(t, "east", "west", "tiebreak")
	runner := actionstest.NewRunner()
	entered := make(chan string, 64)
	runner.Entered = entered
	// Every witness gets the same recording runner.
	for i := range tc.nodes {
		tc.stop(i)
	}
	for i := range tc.nodes {
		n, err := Start(context.Background(), Options{Config: tc.cfgs[i], Logger: testLogger(t), Runner: runner, LocalDatabase: (&fenceRecorder{}).database})
		if err != nil {
			t.Fatal(err)
		}
		tc.nodes[i] = n
		running.Store(n.Name(), n)
	}
	li, leader := tc.leader()
	applyDoc(t, leader, `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {mode: observe}
    actions:
      postgres: {dsn: {east: "host=east-db user=witness", west: "host=west-db user=witness"}, roles: [app]}
`)
	eventually(t, "initial plan done: west fenced, east promoted", func() bool {
		g, _ := leader.FSM().Group("app")
		return len(g.GetStatus().GetSteps()) == 2
	})
	// Add DNS to the group's actions and let the current token's plan
	// take it in; then switch over with DNS blocked: the plan of the new
	// token is fence, promote, dns, and dns blocks on this leader.
	applyDoc(t, leader, `
groups:
  - name: app
    sites:
      - {name: east, probes: [{kind: tcp, address: "127.0.0.1:1"}]}
      - {name: west, probes: [{kind: tcp, address: "127.0.0.1:2"}]}
    policy: {mode: observe}
    actions:
      postgres: {dsn: {east: "host=east-db user=witness", west: "host=west-db user=witness"}, roles: [app]}
      dns:
        server: "127.0.0.1:53"
        zone: example.test.
        tsig: {name: k, secret_file: /nonexistent}
        records: [{name: app.example.test., ttl: 5, values: {east: 192.0.2.1, west: 192.0.2.2}}]
`)
	eventually(t, "the current token's DNS step", func() bool {
		g, _ := leader.FSM().Group("app")
		for _, s := range g.GetStatus().GetSteps() {
			if s.GetToken() == g.GetStatus().GetToken() && s.GetStep() == actions.StepDNS && s.GetOk() {
				return true
			}
		}
		return false
	})
	runner.Block(actions.StepDNS)
	for len(entered) > 0 {
		<-entered
	}
	tok := switchover(t, leader, "app", "west")
	for step := range entered {
		if step == actions.StepDNS {
			break
		}
	}
	tc.stop(li)
	runner.Release(actions.StepDNS)
	_, leader = tc.leader()
	eventually(t, "the new leader to finish the plan", func() bool {
		g, _ := leader.FSM().Group("app")
		n := 0
		for _, s := range g.GetStatus().GetSteps() {
			if s.GetToken() == tok && s.GetOk() {
				n++
			}
		}
		return n == 4
	})
	count := map[string]int{}
	for _, c := range runner.Calls() {
		if c.Token == tok {
			count[c.Step]++
		}
	}
	if diff := cmp.Diff(map[string]int{"fence": 1, "promote": 1, "dns": 1, "settle": 1}, count); diff != "" {
		t.Errorf("steps run at token %d (-want +got):\n%s", tok, diff)
	}
	g, _ := leader.FSM().Group("app")
	nodes := map[string]string{}
	for _, s := range g.GetStatus().GetSteps() {
		if s.GetToken() == tok {
			nodes[s.GetStep()] = s.GetNode()
		}
	}
	if nodes["promote"] == nodes["dns"] {
		t.Errorf("promote and dns recorded by the same node %s: the plan was not resumed by another leader", nodes["dns"])
	}
}

func TestMetricsExposeGroupsAndSteps(t *testing.T) {
	tc := newTestCluster(t, "east")
	_, leader := tc.leader()
	applyDoc(t, leader, twoGroups)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(&collector{n: leader, detail: true})
	switchover(t, leader, "app", "west")
	leader.Apply(context.Background(), &witnessv1.RecordStepCommand{Group: "app", Result: &witnessv1.StepResult{Token: 3, Step: "dns", Ok: false, Error: "refused"}})
	want := `
# HELP witness_group_step_results Step results recorded for the group's current token, by step and outcome. Exported when metrics_group_detail is set.
# TYPE witness_group_step_results gauge
witness_group_step_results{group="app",result="failed",step="dns"} 1
# HELP witness_group_token Current fencing token of a group.
# TYPE witness_group_token gauge
witness_group_token{group="app"} 3
witness_group_token{group="db"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "witness_group_token", "witness_group_step_results"); err != nil {
		t.Error(err)
	}
}
