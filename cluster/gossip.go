package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// nodeMeta is what each witness tells the others about itself through
// memberlist's node metadata.
type nodeMeta struct {
	Version int    `json:"v"`
	Site    string `json:"site"`
	Raft    string `json:"raft"`
	Admin   string `json:"admin"`
}

const metaVersion = 1

// Gossip timing of observations: heartbeats keep them fresh, push/pull
// repairs a copy that missed a change.
const (
	heartbeatEvery   = time.Second
	pushPullInterval = 5 * time.Second
	// gossipTCPTimeout bounds gossip's TCP exchanges (joins, push/pull).
	gossipTCPTimeout = 2 * time.Second
)

// delegate answers memberlist's callbacks. Callbacks never block.
type delegate struct {
	meta []byte
	log  *slog.Logger
	obs  *observations
}

func (d *delegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit {
		return nil
	}
	return d.meta
}

// NotifyMsg receives an observation delta; it hands it over and returns.
func (d *delegate) NotifyMsg(b []byte) { d.obs.receive(b) }

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	if d.obs.queue == nil {
		return nil
	}
	d.obs.flush(limit - overhead)
	return d.obs.queue.GetBroadcasts(overhead, limit)
}

// LocalState is this witness's full observation vector, for push/pull.
func (d *delegate) LocalState(join bool) []byte { return d.obs.full() }

// MergeRemoteState receives another witness's full vector.
func (d *delegate) MergeRemoteState(buf []byte, join bool) { d.obs.receive(buf) }

// NotifyConflict is memberlist telling that another node uses our name.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.log.Error("another witness uses this node's name", "name", existing.Name, "address", other.Address())
}

// peers is the live view that memberlist keeps, read by status and
// forwarding.
type peer struct {
	Name       string
	GossipAddr string
	Meta       nodeMeta
}

func decodeMeta(n *memberlist.Node) (nodeMeta, bool) {
	var m nodeMeta
	if err := json.Unmarshal(n.Meta, &m); err != nil || m.Version != metaVersion {
		return m, false
	}
	return m, true
}

// gossip wraps the gossip layer (memberlist unless Options.Gossip says).
type gossip struct {
	ml      Gossip
	log     *slog.Logger
	members *members

	mu    sync.Mutex
	peers []string // gossip addresses to (re)join
}

// alive returns the witnesses gossip sees alive, with their metadata.
func (g *gossip) alive() map[string]peer { return g.members.alive() }

// members is memberlist's view of the witnesses, copied when memberlist
// tells of a change. memberlist.Members hands out nodes that it goes on
// changing under its own lock, so reading them later races with it; its
// event callbacks run under that lock, and copy here without blocking.
type members struct {
	log   *slog.Logger
	mu    sync.Mutex
	peers map[string]peer
	sites map[string]string // every witness ever seen, by name: its site
	dirty bool              // sites changed since last saved
}

// sitesFile, in data_dir, keeps the sites of the witnesses this node has
// seen across restarts: a leader judges a site's lease by the witnesses
// there, also those gossip no longer shows.
const sitesFile = "sites.json"

// loadSites reads what saveSites wrote; a missing file is no error.
func (m *members) loadSites(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, sitesFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", sitesFile, err)
	}
	var sites map[string]string
	if err := json.Unmarshal(b, &sites); err != nil {
		return fmt.Errorf("read %s: %w", sitesFile, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range sites {
		if _, ok := m.sites[k]; !ok {
			m.sites[k] = v
		}
	}
	return nil
}

// saveSites writes the sites when they changed since the last save.
func (m *members) saveSites(dir string) error {
	m.mu.Lock()
	if !m.dirty {
		m.mu.Unlock()
		return nil
	}
	b, err := json.Marshal(m.sites)
	m.dirty = false
	m.mu.Unlock()
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, sitesFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", sitesFile, err)
	}
	return os.Rename(tmp, filepath.Join(dir, sitesFile))
}

var _ memberlist.EventDelegate = (*members)(nil)

func newMembers(log *slog.Logger) *members {
	return &members{log: log, peers: map[string]peer{}, sites: map[string]string{}}
}

func (m *members) NotifyJoin(n *memberlist.Node)   { m.set(n) }
func (m *members) NotifyUpdate(n *memberlist.Node) { m.set(n) }
func (m *members) NotifyLeave(n *memberlist.Node) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.peers, n.Name)
}

func (m *members) set(n *memberlist.Node) {
	meta, ok := decodeMeta(n)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !ok {
		m.log.Debug("ignoring member with unknown metadata", "name", n.Name)
		delete(m.peers, n.Name)
		return
	}
	m.peers[n.Name] = peer{Name: n.Name, GossipAddr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), Meta: meta}
	if meta.Site != "" && m.sites[n.Name] != meta.Site {
		m.sites[n.Name] = meta.Site
		m.dirty = true
	}
}

// seenSites is the site of every witness gossip has ever shown, also of
// those it no longer sees.
func (m *members) seenSites() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.sites)
}

func (m *members) alive() map[string]peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.peers)
}

func (g *gossip) addPeers(addrs ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range addrs {
		found := false
		for _, p := range g.peers {
			found = found || p == a
		}
		if !found {
			g.peers = append(g.peers, a)
		}
	}
}

// rejoin joins every known peer that memberlist does not see alive.
func (g *gossip) rejoin(self string) {
	g.mu.Lock()
	want := append([]string(nil), g.peers...)
	g.mu.Unlock()
	seen := map[string]bool{self: true}
	for _, p := range g.alive() {
		seen[p.GossipAddr] = true
	}
	var missing []string
	for _, a := range want {
		if !seen[a] {
			missing = append(missing, a)
		}
	}
	if len(missing) == 0 {
		return
	}
	if n, err := g.ml.Join(missing); err != nil && n == 0 {
		g.log.Debug("gossip join", "peers", missing, "error", err)
	}
}

// resync exchanges full states with the witness named node, as a join
// does: its observations replace the copy here that missed a change.
func (g *gossip) resync(node string) {
	p, ok := g.alive()[node]
	if !ok || p.GossipAddr == "" {
		return
	}
	if _, err := g.ml.Join([]string{p.GossipAddr}); err != nil {
		g.log.Debug("gossip sync", "peer", node, "error", err)
	}
}
