// Package actions carries the leader's decisions out on the world.
//
// The Reconciler is level-triggered, like a controller: for every group it
// derives the plan of the current token (fence the old site's database,
// promote the new one, switch DNS, wait for DNS to settle), skips the steps
// whose success is already recorded in the replicated state, and runs the
// next one. Each step is idempotent, carries the group's fencing token, is
// run only right after the node has verified its leadership, and has its
// outcome (ok or error text, duration, attempt, node) committed through
// Raft: a new leader resumes an unfinished plan from the recorded results,
// and the history doubles as the audit log. Failed steps are retried with
// exponential backoff. Required steps hold up the ones after them;
// best-effort steps (fencing an unreachable old site, notifying) do not.
//
// Each operator hook is a step of its own (HookStep), at its phase of the
// plan: fence, promote or after_switch. Targets runs it on the leader, or
// through SiteHooks on a witness at the hook's run_on site. local_fence
// hooks are not in the plan; the cluster's self-fencing lease runs them
// with RunHook.
//
// Once a group's plan has settled, the reconciler re-reads its DNS records
// every check_every and puts back under the current token what was edited
// by hand (Runner.CheckDNS), telling OnDrift; a higher fence is never
// lowered.
//
// The targets live in subpackages: actions/dns (RFC 2136 with a token
// compare-and-swap the DNS server checks), actions/postgres (promote and
// fence, with a token table), actions/exec (hooks) and actions/notify.
// A group's PostgreSQL node at one site is a Database, whose every change
// carries the token explicitly; Postgres is the one implementation, over
// actions/postgres. Targets reaches the nodes of a plan through it over
// SQL, and the cluster's self-fencing lease reaches its own site's node
// through it, data_dir included.
package actions
