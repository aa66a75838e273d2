// Package fsm is Witness's replicated state machine: the groups (spec and
// status), their active sites and fencing tokens, and the commands that
// change them.
//
// Apply is a function of (state, entry): no clock, no I/O, no randomness.
// Time travels inside commands, stamped by the node that proposed them. An
// entry is one type byte followed by a protobuf payload (Encode, Decode). A
// committed entry that cannot be decoded makes Apply panic, so a replica
// stops loudly rather than diverging; bad input is refused long before, at
// the API.
//
// Tokens: every token ever issued is State.last_token+1, so a group's token
// grows with every change of its active site and no token is reused, not
// even for a group deleted and created again, nor across snapshot and
// restore. A transition names the token it expects to replace and is refused
// (ErrStaleToken) when that is no longer the group's token, so two racing
// decisions can never both win.
package fsm
