package config

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// FencePrefix starts the name of the TXT record that fences a DNS record:
// the record app.example.test. is fenced by _witness.app.example.test.
// No record of a group may have a name that starts with it.
const FencePrefix = "_witness."

// FenceName is the name of the TXT record that fences records named name.
func FenceName(name string) string { return FencePrefix + fqdn(name) }

// owner is one group's claim on a DNS name.
type owner struct {
	group string
	field string // field path in the applied document; empty for an existing group
}

// CheckOwnership refuses DNS names that two groups would manage: a record
// name (which its fence TXT record, FenceName, shares, whatever the record
// types) claimed by two groups of applied, or by a group of applied and a
// group of existing that applied does not replace. A group of applied with
// the name of an existing group replaces it, so their records do not
// conflict. Names are compared whole and in lower case, on whatever server
// each group names: two servers can host one zone.
//
// existing are the groups in the replicated state and applied the specs of
// one document, in its order, as ParseGroups returned them. Each problem is
// a *ValidationError wrapping ErrOwned, with the field path of the applied
// document (groups[1].actions.dns.records[0].name), inside Errors.
func CheckOwnership(existing, applied []*witnessv1.GroupSpec) error {
	var p problems
	claims := map[string]owner{} // record name -> first group that claims it
	replaced := map[string]bool{}
	for _, g := range applied {
		replaced[g.GetName()] = true
	}
	for _, g := range existing {
		if replaced[g.GetName()] {
			continue
		}
		for _, r := range g.GetActions().GetDns().GetRecords() {
			name := fqdn(r.GetName())
			if _, ok := claims[name]; !ok {
				claims[name] = owner{group: g.GetName()}
			}
		}
	}
	for gi, g := range applied {
		mine := map[string]bool{}
		for ri, r := range g.GetActions().GetDns().GetRecords() {
			name := fqdn(r.GetName())
			f := fmt.Sprintf("groups[%d].actions.dns.records[%d].name", gi, ri)
			if o, ok := claims[name]; ok && o.group != g.GetName() {
				where := "an existing group"
				if o.field != "" {
					where = o.field
				}
				p.addf(f, name, ErrOwned, "group %s manages %s and its fence record %s (%s)", o.group, name, FenceName(name), where)
				continue
			}
			if !mine[name] {
				claims[name] = owner{group: g.GetName(), field: f}
				mine[name] = true
			}
		}
	}
	return p.err()
}

// CheckLocalFiles checks the files that the groups' actions read, on the
// host that calls it: a TSIG secret file must be readable and hold a base64
// secret, since an update that cannot be signed fails only after the old
// site was fenced and the new one promoted. The leader reads the file when
// it updates DNS, so the file must be on every witness that can lead; the
// check is made on the witness that applies the groups. applied are the
// specs of one document, in its order, as ParseGroups returned them.
// Problems are *ValidationError in Errors, with field paths of the
// document; a file that cannot be read wraps ErrUnreadable and its os
// error (errors.Is(err, fs.ErrNotExist)).
func CheckLocalFiles(applied []*witnessv1.GroupSpec) error {
	var p problems
	for gi, spec := range applied {
		d := spec.GetActions().GetDns()
		if d == nil || d.GetTsigSecretFile() == "" {
			continue
		}
		f := fmt.Sprintf("groups[%d].actions.dns.tsig.secret_file", gi)
		path := d.GetTsigSecretFile()
		data, err := os.ReadFile(path)
		secret := strings.TrimSpace(string(data))
		switch {
		case err != nil:
			p.add(f, path, fmt.Errorf("%w: %w", ErrUnreadable, err))
		case secret == "":
			p.addf(f, path, ErrUnreadable, "the file is empty")
		default:
			if raw, err := base64.StdEncoding.DecodeString(secret); err != nil || len(raw) == 0 {
				p.addf(f, path, ErrInvalid, "the file does not hold a base64 TSIG secret")
			}
		}
	}
	return p.err()
}
