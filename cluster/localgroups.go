package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// localGroupsFile, in data_dir, holds the groups that have a database or
// local_fence hooks at this witness's site, each with its spec and the
// last token and active site this witness knew: what it may have to fence
// when its lease runs out. A restarted witness's replica can be empty or
// behind (hashicorp/raft applies the entries past the last snapshot only
// once a leader tells it the commit index), and a witness cut off from
// the leader may not know that its site became active; this file does
// not depend on either.
const localGroupsFile = "local-groups.pb"

// localGroups is this witness's record of the groups that name its site,
// kept in step with what its replica shows and written to data_dir when
// it changes.
type localGroups struct {
	path    string
	site    string
	byName  map[string]*witnessv1.Group
	written []byte // the file's content as last written or read
}

// loadLocalGroups reads the record in dir; a missing file is an empty
// record. An unreadable one is an error, with an empty record that the
// next write replaces.
func loadLocalGroups(dir, site string) (*localGroups, error) {
	l := &localGroups{path: filepath.Join(dir, localGroupsFile), site: site, byName: map[string]*witnessv1.Group{}}
	b, err := os.ReadFile(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("read %s: %w", l.path, err)
	}
	var m witnessv1.ListGroupsResponse
	if err := proto.Unmarshal(b, &m); err != nil {
		return l, fmt.Errorf("decode %s: %w", l.path, err)
	}
	for _, g := range m.GetGroups() {
		l.byName[g.GetSpec().GetName()] = g
	}
	l.written = b
	return l, nil
}

// namesSite reports whether group g has a database or local_fence hooks
// at site: what a self-fence there acts on.
func namesSite(g *witnessv1.Group, site string) bool {
	return localDSN(g, site) != "" || len(localFenceHooks(g)) > 0
}

// update takes in what the replica shows: each group that names this
// site, at a token no lower than the one recorded. Groups that the
// replica lacks or that no longer name this site are dropped only when
// complete says the replica has applied its whole log (it is no longer
// behind the record). It writes the file when the record changed.
func (l *localGroups) update(replica []*witnessv1.Group, complete bool) error {
	seen := map[string]bool{}
	for _, g := range replica {
		name := g.GetSpec().GetName()
		if !namesSite(g, l.site) {
			continue
		}
		seen[name] = true
		if old, ok := l.byName[name]; ok && old.GetStatus().GetToken() > g.GetStatus().GetToken() {
			continue
		}
		l.byName[name] = &witnessv1.Group{Spec: g.GetSpec(), Status: &witnessv1.GroupStatus{
			Token: g.GetStatus().GetToken(), ActiveSite: g.GetStatus().GetActiveSite()}}
	}
	if complete {
		for name := range l.byName {
			if !seen[name] {
				delete(l.byName, name)
			}
		}
	}
	return l.write()
}

// groups are the recorded groups, by name.
func (l *localGroups) groups() []*witnessv1.Group {
	out := make([]*witnessv1.Group, 0, len(l.byName))
	for _, g := range l.byName {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *witnessv1.Group) int { return strings.Compare(a.GetSpec().GetName(), b.GetSpec().GetName()) })
	return out
}

// write writes the record if it differs from the file: a temporary file,
// synced, renamed over the old one, and the directory synced.
func (l *localGroups) write() error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&witnessv1.ListGroupsResponse{Groups: l.groups()})
	if err != nil {
		return fmt.Errorf("encode %s: %w", l.path, err)
	}
	if l.written != nil && bytes.Equal(b, l.written) {
		return nil
	}
	tmp := l.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", l.path, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, l.path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", l.path, err)
	}
	if d, err := os.Open(filepath.Dir(l.path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	l.written = b
	return nil
}
