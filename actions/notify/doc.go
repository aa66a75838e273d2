// Package notify tells people about a transition: a JSON webhook and a
// plain-text email, each sent once per (group, token, kind) by the leader
// after the transition's steps have run.
//
// Webhook.Send POSTs the Message as JSON (Content-Type application/json):
//
//	{
//	  "group":  "app",
//	  "from":   "east",            // "" when no site was active
//	  "to":     "west",
//	  "token":  8,                 // the group's fencing token
//	  "kind":   "failover",        // failover, switchover or failback
//	  "reason": "east failing …",
//	  "at":     "2026-03-01T12:00:00.000Z",  // RFC 3339, UTC
//	  "steps":  [                  // in order; [] when none
//	    {"name": "fence east", "ok": true, "duration_ms": 120},
//	    {"name": "promote west", "ok": false, "error": "…", "duration_ms": 2100}
//	  ]
//	}
//
// with the headers X-Witness-Token (the token, decimal), X-Witness-Delivery
// ("<group>-<token>-<kind>", the same on every retry, for the receiver to
// drop duplicates) and, when Webhook.Secret is set, X-Witness-Signature:
// "sha256=" and the hex HMAC-SHA256 of the exact body bytes keyed with the
// secret. Any 2xx answer is a delivery. Network errors, timeouts, 5xx and
// 429 are retried with exponential backoff (a Retry-After in seconds is
// honoured, up to a minute); any other answer, redirects included, is
// ErrRejected at once. Errors name the endpoint by scheme and host only,
// since webhook URLs often carry a secret in their path.
//
// Email.Send delivers one message over SMTP. It requires STARTTLS unless
// AllowPlaintext is set (ErrNoTLS otherwise) and never sends credentials
// without TLS; with a Username it authenticates with AUTH PLAIN after
// STARTTLS. The message is text/plain UTF-8, quoted-printable, with Date,
// Message-ID, MIME-Version and Auto-Submitted headers and a subject like
// "[witness] app failed over east → west (token 8)". An SMTP reply 5xx is
// ErrRejected; other failures are ErrDelivery. Email is not retried here.
//
// Errors match with errors.Is (ErrDelivery, ErrRejected, ErrNoTLS,
// ErrInvalid), and ctx.Err() when ctx ended first; a webhook answer that
// failed is a *StatusError with the status code. Senders hold no state
// between calls and are safe for concurrent use.
package notify
