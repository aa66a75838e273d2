package actions

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sitewitness/witness/actions/exec"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Hook steps: where in a transition an operator's hook runs
// (HookAction.step).
const (
	// HookFence hooks run in the fence phase, after the old site's
	// database was fenced; only on a move from another site.
	HookFence = "fence"
	// HookPromote hooks run after the database promote, before DNS.
	HookPromote = "promote"
	// HookAfterSwitch hooks run after the DNS switch.
	HookAfterSwitch = "after_switch"
	// HookLocalFence hooks are not in the plan: the self-fencing lease
	// runs them on the witnesses at the active site when those lose the
	// Raft majority.
	HookLocalFence = "local_fence"
)

// RunOnLeader is the run_on of a hook the leader runs itself.
const RunOnLeader = "leader"

// hookStepPrefix starts the plan step name of a hook.
const hookStepPrefix = "hook:"

// HookStep is the plan step that runs one hook: "hook:<step>:<name>", for
// example "hook:after_switch:start-workers". Every hook is a step of its
// own, recorded on its own, so a new leader never runs a hook again that
// is recorded as done.
func HookStep(h *witnessv1.HookAction) string {
	return hookStepPrefix + h.GetStep() + ":" + h.GetName()
}

// ParseHookStep splits a plan step made by HookStep into the hook's step
// and name.
func ParseHookStep(step string) (hookStep, name string, ok bool) {
	rest, ok := strings.CutPrefix(step, hookStepPrefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ":")
}

// FindHook returns the hook of g with the given name.
func FindHook(g *witnessv1.Group, name string) (*witnessv1.HookAction, bool) {
	for _, h := range g.GetSpec().GetActions().GetHooks() {
		if h.GetName() == name {
			return h, true
		}
	}
	return nil, false
}

// HookEvent is what a hook of g is told about the transition at g's
// current token. WITNESS_FROM is the site the token took the group from
// (empty at creation); for a local_fence hook it is the site that fences
// itself, and WITNESS_TO is empty, since nothing was decided.
func HookEvent(g *witnessv1.Group, h *witnessv1.HookAction) exec.Event {
	st := g.GetStatus()
	ev := exec.Event{Group: g.GetSpec().GetName(), Token: st.GetToken(), From: previousSite(g), To: st.GetActiveSite(), Step: h.GetStep()}
	if h.GetStep() == HookLocalFence {
		ev.From, ev.To = st.GetActiveSite(), ""
	}
	return ev
}

// Witness names the witness that runs a hook, for the hook's environment
// (WITNESS_NODE, WITNESS_SITE); empty fields are left out.
type Witness struct {
	Node, Site string
}

func (w Witness) env() []string {
	var env []string
	if w.Node != "" {
		env = append(env, "WITNESS_NODE="+w.Node)
	}
	if w.Site != "" {
		env = append(env, "WITNESS_SITE="+w.Site)
	}
	return env
}

// RunHook runs hook h of group g on this machine, for g's current token,
// with actions/exec: the command and its arguments come from the spec, the
// environment from HookEvent and w, the timeout from the hook.
func RunHook(ctx context.Context, g *witnessv1.Group, h *witnessv1.HookAction, w Witness) (exec.Result, error) {
	return exec.Run(ctx, exec.Hook{Name: h.GetName(), Command: h.GetCommand(), Args: h.GetArgs(), Timeout: hookTimeout(h), Env: w.env()}, HookEvent(g, h))
}

func hookTimeout(h *witnessv1.HookAction) time.Duration {
	if h.GetTimeoutMs() <= 0 {
		return exec.DefaultTimeout
	}
	return time.Duration(h.GetTimeoutMs()) * time.Millisecond
}

// HookRequest asks a witness at a site to run one hook of a group. It only
// names the hook: the witness takes the command from the spec it holds.
type HookRequest struct {
	Group string
	Hook  string
	Step  string
	Token uint64
}

func (r HookRequest) String() string {
	return fmt.Sprintf("hook %s (%s) of %s at token %d", r.Hook, r.Step, r.Group, r.Token)
}

// SiteHooks runs hooks on a witness at a named site; the cluster provides
// it. RunHook returns nil when the hook ran there and succeeded, and an
// error that says which witness refused or failed, or that none could be
// reached, otherwise.
type SiteHooks interface {
	RunHook(ctx context.Context, site string, req HookRequest) error
}
