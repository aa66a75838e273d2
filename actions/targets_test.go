package actions_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sitewitness/witness/actions"
	"github.com/sitewitness/witness/actions/actionstest"
	"github.com/sitewitness/witness/actions/dns"
	"github.com/sitewitness/witness/actions/dns/zoneserver"
	"github.com/sitewitness/witness/fsm"
	"github.com/sitewitness/witness/integration/pgharness"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// TestTargetsAgainstRealSystems runs a whole failover plan with the real
// runner: a PostgreSQL primary and streaming standby, and an authoritative
// DNS server that checks the fencing token itself.
func TestTargetsAgainstRealSystems(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	standby := pgharness.StartStandby(t, primary)

	secret := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	keyFile := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
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

	// A hook that records what it was told, and a webhook receiver.
	hookLog := filepath.Join(t.TempDir(), "hook.log")
	var delivered atomic.Int32
	var lastBody atomic.Value
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		lastBody.Store(string(b))
		delivered.Add(1)
	}))
	t.Cleanup(hook.Close)

	spec := &witnessv1.GroupSpec{
		Name:  "app",
		Sites: []*witnessv1.SiteSpec{{Name: "east"}, {Name: "west"}},
		Actions: &witnessv1.Actions{
			Postgres: &witnessv1.PostgresAction{Dsn: map[string]string{"east": primary.DSN("postgres"), "west": standby.DSN("postgres")}},
			Dns: &witnessv1.DNSAction{Server: zs.Addr(), Zone: "example.test.", TsigKeyName: "witness.", TsigAlgorithm: "hmac-sha256", TsigSecretFile: keyFile,
				Records: []*witnessv1.DNSRecord{{Name: "app.example.test.", Type: "A", Ttl: 1, Values: map[string]string{"east": "192.0.2.10", "west": "198.51.100.10"}}}},
			Hooks: []*witnessv1.HookAction{{Name: "record", Step: "after_switch", Command: "sh",
				Args: []string{"-c", `echo "$WITNESS_GROUP $WITNESS_TOKEN $WITNESS_FROM $WITNESS_TO" >> ` + hookLog}, TimeoutMs: 5000}},
			Notify: []*witnessv1.NotifyAction{{Kind: "webhook", Url: hook.URL}},
		},
	}
	l := &actionstest.Leader{FSM: fsm.New()}
	l.Apply(context.Background(), &witnessv1.PutGroupsCommand{Specs: []*witnessv1.GroupSpec{spec}})
	runUntil(t, l, actions.Targets{}, func() bool { return len(steps(l)) == 4 })
	client := &dns.Client{Server: zs.Addr(), Zone: "example.test."}
	rec := dns.Record{Name: "app.example.test.", Type: "A", TTL: 1}
	if a, err := client.Read(context.Background(), rec); err != nil || a.Token != 1 || a.Site != "east" {
		t.Fatalf("after the initial plan DNS holds %+v (%v)", a, err)
	}

	tok := failover(t, l, "west")
	runUntil(t, l, actions.Targets{}, func() bool { return len(steps(l)) == 6 })
	if diff := cmp.Diff([]string{"fence", "promote", "dns", "hook:after_switch:record", "notify", "settle"}, steps(l)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	hooked, _ := os.ReadFile(hookLog)
	if diff := cmp.Diff("app 1  east\napp 2 east west\n", string(hooked)); diff != "" {
		t.Errorf("hook runs (-want +got):\n%s", diff)
	}
	if n := delivered.Load(); n != 1 || !strings.Contains(lastBody.Load().(string), `"token":2`) {
		t.Errorf("webhook: %d deliveries, last %v", n, lastBody.Load())
	}

	a, err := client.Read(context.Background(), rec)
	if err != nil || a.Token != tok || a.Site != "west" || len(a.Values) != 1 || a.Values[0] != "198.51.100.10" {
		t.Fatalf("DNS after failover: %+v (%v)", a, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The promoted standby takes writes; the fenced old primary refuses
	// them.
	if err := exec(ctx, standby.DSN("postgres"), "create table after_failover(x int)"); err != nil {
		t.Errorf("write on the promoted standby: %v", err)
	}
	err = exec(ctx, primary.DSN("postgres"), "create table split_brain(x int)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Errorf("write on the fenced old primary: %v, want read_only_sql_transaction", err)
	}
	// A deposed leader's late DNS update with the old token is refused.
	g, _ := l.FSM.Group("app")
	stale := &witnessv1.Group{Spec: g.GetSpec(), Status: &witnessv1.GroupStatus{ActiveSite: "east", Token: tok - 1}}
	if err := (actions.Targets{}).SwitchDNS(ctx, stale); !errors.Is(err, dns.ErrLowerToken) {
		t.Errorf("stale switch: %v, want ErrLowerToken", err)
	}
}

func exec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// TestFailoverFenceDoesNotWaitOnADeadSite: in a failover, the fence step
// gives up on an old database it cannot connect to after
// FailoverFenceConnectTimeout, whatever the DSN's connect_timeout, so the
// promotion is not held up; in a switchover the DSN's timeout applies.
func TestFailoverFenceDoesNotWaitOnADeadSite(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dsn := "postgres://postgres@" + l.Addr().String() + "/postgres?sslmode=disable&connect_timeout=3"
	for _, tt := range []struct {
		kind     witnessv1.TransitionKind
		min, max time.Duration
	}{
		{witnessv1.TransitionKind_TRANSITION_KIND_FAILOVER, 0, 2500 * time.Millisecond},
		{witnessv1.TransitionKind_TRANSITION_KIND_SWITCHOVER, 2500 * time.Millisecond, time.Minute},
	} {
		t.Run(tt.kind.String(), func(t *testing.T) {
			g := &witnessv1.Group{
				Spec: &witnessv1.GroupSpec{Name: "app", Actions: &witnessv1.Actions{Postgres: &witnessv1.PostgresAction{Dsn: map[string]string{"east": dsn}}}},
				Status: &witnessv1.GroupStatus{ActiveSite: "west", Token: 2, History: []*witnessv1.Transition{
					{Token: 1, ToSite: "east", Kind: witnessv1.TransitionKind_TRANSITION_KIND_INITIAL},
					{Token: 2, FromSite: "east", ToSite: "west", Kind: tt.kind},
				}},
			}
			start := time.Now()
			err := actions.Targets{}.Fence(context.Background(), g, "east")
			took := time.Since(start)
			if err == nil {
				t.Fatal("fencing a database that never answers succeeded")
			}
			if took < tt.min || took > tt.max {
				t.Errorf("gave up after %s, want between %s and %s", took, tt.min, tt.max)
			}
		})
	}
}
