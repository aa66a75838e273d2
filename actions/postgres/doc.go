// Package postgres carries out the database steps of a failover on
// PostgreSQL: Promote a standby, Fence an old primary over SQL, demote a
// node locally (Demoter), and read a node's actual state with Status. Each
// step is idempotent and carries the group's fencing token, so the
// reconciler can repeat it until it succeeds.
//
// # Tokens
//
// Witness records, on every node it acts on, the last token per group, in
// two places:
//
//   - the table witness.fence (group_name, token, role, site, updated_at),
//     created when first needed, on a node that takes writes. Role is
//     "primary" after Promote and "fenced" after Fence. It is ordinary
//     data: a standby replays its primary's rows.
//   - the node's own store, the custom setting witness.tokens
//     (group=token:role pairs, URL-escaped), written with ALTER SYSTEM into
//     postgresql.auto.conf. It does not replicate, it can be written on a
//     hot standby, and it survives a restart. Fence of a standby records
//     its token there. (pg_basebackup copies postgresql.auto.conf, so a
//     standby cloned from a node starts with that node's tokens: higher
//     tokens only ever refuse more.)
//
// The token a node holds is the higher of the two (NodeStatus.Token). A
// stored token is never lowered, and a node that holds a higher token than
// an action carries refuses the action with ErrHigherToken (as
// *HigherTokenError): a newer decision has acted there, and a stale leader
// must not undo it. While Promote or Fence runs, it holds the session
// advisory lock (0x57544e53, hashtext(group)) on the node, so that actions
// for one group on one node take turns and act on the token they checked;
// witness.tokens is rewritten under the lock (0x57544e54, 0).
//
// # Fence
//
// Fence, on a primary that can still be reached, in this order:
//
//  1. refuses a lower token;
//  2. checks Client.Roles, the group's application roles: each must exist
//     (ErrUnknownRole) and must not be a superuser, have REPLICATION or be
//     the role of the DSN (ErrUnfenceableRole); both as *RoleError, before
//     anything changes;
//  3. in one transaction, ALTER ROLE … NOLOGIN for each of them that can
//     log in, recording exactly those in witness.blocked_role, so that
//     Promote gives back what Fence took and nothing else (a role that was
//     NOLOGIN already stays so);
//  4. sets default_transaction_read_only = on with ALTER SYSTEM and
//     pg_reload_conf() (an extra layer only; nothing depends on it);
//  5. terminates every client backend but its own (walsenders and
//     background workers stay), waits until they are gone, then looks for
//     sessions of the roles again, and ends them, until a look finds none:
//     a login that passed its check just before NOLOGIN committed can
//     register only afterwards. Sessions that do not end within
//     Client.SettleWait fail the fence with ErrSessionsRemain;
//  6. only then records the token with role "fenced". The record says the
//     node refuses the group's clients, and it is written only once that is
//     true, so no write can carry the new token on the old primary.
//
// Fencing again at the same token changes nothing when the roles are
// still blocked and none of their sessions is left; otherwise it does the
// steps again. A fence at a higher token updates the record.
//
// On a node still in recovery, Fence records the token in the node's own
// store first (a standby takes no writes, so there is no window to close,
// and a stale Promote is refused from then on), sets the read-only
// default and ends the client sessions. It blocks no login: a standby's
// catalog cannot change, and replays its primary's.
//
// What the remote fence holds against: every client that logs in as one
// of Client.Roles, whatever it sets in its session, its connection options
// or its role's settings (SET default_transaction_read_only, SET SESSION
// CHARACTERISTICS, BEGIN READ WRITE, options=-c …, ALTER ROLE … SET), and
// every session that was open when the fence ran. What it does not hold
// against, by design: a superuser, or a role not in Client.Roles, that
// logs in by any path (it can also ALTER ROLE … LOGIN back); a role in
// Client.Roles that is reached through another role's login (SET ROLE);
// and, without Client.Roles, any client at all logging in again, since
// then Fence only ends the sessions that exist. A node the leader cannot
// reach is not fenced by it at all: that is what local demotion is for.
//
// # Promote
//
// Promote refuses a lower token (of either store), does nothing when the
// node already left recovery, records itself primary at this token and
// has no blocked roles, and otherwise: makes the node read-only by default
// while it leaves recovery, calls pg_promote(wait => false) and waits until
// pg_is_in_recovery() is false (Client.PromoteWait), reloading the
// configuration every 100 ms meanwhile to wake the startup process (a
// standby whose primary refuses connections can otherwise sleep out
// wal_retrieve_retry_interval, 5 s by default, after it saw the promote
// request), records the token and, in the same
// transaction, gives back the logins that Fence blocked for the group
// (ALTER ROLE … LOGIN, except a role that another group's fence still
// holds), and lifts the read-only default last. So no application role
// logs in, and the node takes no write by default, before the token is
// recorded. Blocked roles replicate with the catalog: after a switchover
// the promoted standby has them blocked and recorded, and its Promote
// gives them back there. A node that is already out of recovery is taken
// as promoted by an earlier attempt (or made primary by hand) and only
// gets the last steps; this is also how the first active site of a group
// is recorded. Promote with the same token as a Fence on that node lifts
// the fence: that is the isolated active site rejoining with no failover
// in between.
//
// Promote cannot block logins on a standby before it leaves recovery: a
// session that was open on the standby and turned the read-only default
// off for itself could write between pg_promote and the token record.
//
// # Local demotion
//
// Demoter is what the witness at the old site runs against its own
// database host: it writes standby.signal, so that any later start comes
// up as a standby, then stops PostgreSQL (pg_ctl stop as the data
// directory's owner, or a configured command) and kills the postmaster if
// it is still there when its time limit runs out (SIGSTOP, so it forks no
// more, then SIGKILL to it and its children). It counts as done when the
// postmaster is gone (and with it every backend) and the DSN refuses
// connections, not when a command returned. It holds against every client, superusers included, until
// someone starts the database again; StartAsStandby keeps it unable to
// take writes, and StartAsPrimary is the caller's decision, to be taken
// only after a linearizable read says the site is active.
//
// # Connections and errors
//
// Every call opens one connection with pgx from a DSN (URL or keyword
// form), bounded by the context and by Client.ConnectTimeout when the DSN
// sets no connect_timeout. The DSN's role and database are never fenced:
// Witness must be able to come back. The DSN should not override
// default_transaction_read_only, since Promote and Fence watch that setting
// in their own session to know when a reload took effect. The role needs
// superuser rights (pg_promote, ALTER SYSTEM, ALTER ROLE, reading
// pg_file_settings, pg_terminate_backend on other roles' sessions). Errors
// name the step ("promote standby: …", "fence primary: …", "read database
// status: …") and wrap ErrUnreachable or ErrAuth for connection failures,
// next to the underlying pgx error and, on a timeout,
// context.DeadlineExceeded.
package postgres
