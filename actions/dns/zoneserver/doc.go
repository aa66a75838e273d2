// Package zoneserver is a small authoritative DNS server for one dynamic zone,
// held in memory and built on miekg/dns.
//
// It serves UDP and TCP on one port and is meant for `witnessd dev` and for
// tests of actions/dns that need a real DNS server on loopback. Its contract:
//
//   - Queries for names in the zone are answered authoritatively (AA set):
//     data, NODATA (NOERROR with the SOA in the authority section) or
//     NXDOMAIN (same). CNAMEs are followed inside the zone. Queries for other
//     names are REFUSED. Wildcards and delegations are not supported.
//   - RFC 2136 UPDATE is accepted only when signed with TSIG by one of the
//     configured keys: an unsigned update is REFUSED, a badly signed one gets
//     NOTAUTH with the TSIG error (BADKEY, BADSIG, BADTIME).
//   - Every prerequisite kind of RFC 2136 section 2.4 is evaluated against the
//     zone, and the update section (add, delete RRset, delete name, delete RR)
//     is applied only if all prerequisites hold, atomically: a refused update
//     changes nothing. Prerequisite evaluation and application happen under
//     one lock, so concurrent updates are serialised. The SOA serial grows
//     with every update that changes the zone. Names outside the zone get
//     NOTZONE.
//
// The zone is not persisted: it lives as long as the Server.
package zoneserver
