// Package config reads a witness's node configuration and the group specs
// an operator applies, both in YAML.
//
// Node configuration is built in layers: Default(), then the file
// (LoadNode), then WITNESS_* environment variables (ApplyEnv), then flags,
// then Validate. Group specs are parsed whole by ParseGroups, which fills
// defaults and validates every group against itself and its values against
// each other (probe timeout < interval; fence_after at least the group's
// Margin below failover_after, a margin derived from its probes and the
// node's Timing). Every problem is reported with its field path, such as
// groups[2].actions.dns.records[0].ttl, as a *ValidationError inside an
// Errors list; a document with any problem is refused whole.
//
// Two checks need more than the document and are the applier's to call:
// CheckOwnership refuses DNS names that another group manages, and
// CheckLocalFiles reads, on the applying witness, the files the actions
// will need.
//
// Secrets (TSIG keys, webhook secrets, SMTP passwords) are never in these
// files: they name files that hold them, read when an action runs.
package config
