// Package dns switches a group's DNS records to its active site with RFC 2136
// dynamic updates that the DNS server itself fences by token.
//
// Every managed record (name, type A, AAAA, CNAME or TXT, TTL, one value per
// site) has a companion TXT record, the fence, at "_witness.<name>" whose
// single value is exactly "token=N site=S". Client.Switch reads the fence and
// the record over TCP from the authoritative server, then:
//
//   - a fence with a higher token than the one asked: ErrLowerToken, nothing
//     is sent (a target never goes back to a lower token);
//   - the same token and site and the right record: OutcomeUnchanged;
//   - otherwise one TSIG-signed UPDATE whose prerequisite is the exact fence
//     value that was read ("RRset does not exist" when there was none), and
//     which replaces the record's RRset and the fence. If the fence changed
//     in between, the server refuses the prerequisite and Switch returns
//     ErrStaleToken: the refusal comes from the DNS server, so a deposed
//     leader's late update cannot land whatever the client believes.
//     A record edited by hand under the current token and site is put back
//     the same way (OutcomeDriftCorrected).
//
// Errors are sentinels to test with errors.Is (ErrTSIG, ErrUnreachable, …);
// an answer with an unexpected rcode is a *RcodeError that names it. Resolve
// asks a resolver what it returns now, for the settle step after a switch.
package dns
