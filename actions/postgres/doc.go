// Package postgres carries out the database steps of a failover on
// PostgreSQL: Promote a standby, Fence an old primary, and read a node's
// actual state with Status. Each step is idempotent and carries the group's
// fencing token, so the reconciler can repeat it until it succeeds.
//
// # Token table
//
// Witness records, on every node it acted on, the last token per group in
// the table witness.fence (group_name, token, role, site, updated_at),
// created when first needed. Role is "primary" after Promote and "fenced"
// after Fence. A stored token is never lowered, and a node that holds a
// higher token than an action carries refuses the action with ErrHigherToken
// (as *HigherTokenError): a newer decision has acted there and a stale
// leader must not undo it. The table is ordinary data, so a standby holds
// its primary's rows and Promote can check them before promoting. While
// Promote or Fence runs, it holds the session advisory lock
// (0x57544e53, hashtext(group)) on the node, so that actions for one group
// on one node take turns and act on the token they checked.
//
// # Promote
//
// Promote refuses a lower token, does nothing when the node already left
// recovery and records itself primary at this token, and otherwise calls
// pg_promote(wait => true), checks that pg_is_in_recovery() is false, lifts a
// read-only default that an earlier Fence left (ALTER SYSTEM RESET), and
// records the token last, so the record marks a finished promotion. A node
// that is already out of recovery is taken as promoted by an earlier attempt
// (or made primary by hand) and only gets the last two steps; this is also
// how the first active site of a group is recorded. Promote with the same
// token as a Fence on that node lifts the fence: that is the isolated active
// site rejoining with no failover in between.
//
// # Fence
//
// Fence, on an old primary that can still be reached, refuses a lower
// token, records the token with role "fenced" (so that a stale Promote
// cannot undo the fence), sets default_transaction_read_only = on with
// ALTER SYSTEM and pg_reload_conf(), waits until the setting is in effect,
// then terminates every client backend except its own (not walsenders, not
// background workers) and waits until they are gone. On a node still in
// recovery there is nothing to write; Fence sets the read-only default and
// terminates sessions only.
//
// default_transaction_read_only is a default, not a lock: a client can undo
// it for its own session (SET default_transaction_read_only = off, or BEGIN
// READ WRITE), and a superuser can change it back with ALTER SYSTEM. The
// fence therefore stops well-behaved clients and every session that was open
// before it, not a determined client. Witness relies on more than this
// setting: by the time the old site matters, DNS no longer points clients
// at it (the DNS update itself is fenced by the token at the DNS server);
// the token table makes Witness's own database actions refuse stale
// decisions; and groups can add hooks that stop the service at the fenced
// site.
//
// # Connections and errors
//
// Every call opens one connection with pgx from a DSN (URL or keyword
// form), bounded by the context and by Client.ConnectTimeout when the DSN
// sets no connect_timeout. The DSN should not override
// default_transaction_read_only, since Promote and Fence watch that setting
// in their own session to know when a reload took effect. The role needs
// superuser rights (pg_promote, ALTER SYSTEM, pg_terminate_backend on other
// roles' sessions). Errors name the step ("promote standby: …", "fence
// primary: …", "read database status: …") and wrap ErrUnreachable or ErrAuth
// for connection failures, next to the underlying pgx error and, on a
// timeout, context.DeadlineExceeded.
package postgres
