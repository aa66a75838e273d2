package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sitewitness/witness/config"
)

// identityFile records, in data_dir, which cluster and node the directory
// belongs to, so that a directory is never used by another.
const identityFile = "witness-node.json"

type identity struct {
	Cluster     string   `json:"cluster"`
	ClusterID   string   `json:"cluster_id"`
	Node        string   `json:"node"`
	GossipPeers []string `json:"gossip_peers,omitempty"`
}

// foundingID derives a cluster ID that every founding node computes alike
// from the shared list of initial voters.
func foundingID(cluster string, voters []config.Voter) string {
	lines := make([]string, len(voters))
	for i, v := range voters {
		lines[i] = v.Name + "=" + v.RaftAddr
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(cluster + "\n" + strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:8])
}

func readIdentity(dir string) (identity, bool, error) {
	var id identity
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return id, false, nil
	}
	if err != nil {
		return id, false, fmt.Errorf("read identity: %w", err)
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, false, fmt.Errorf("read identity %s: %w", filepath.Join(dir, identityFile), err)
	}
	return id, true, nil
}

func writeIdentity(dir string, id identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, identityFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, identityFile)); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	return nil
}

// checkIdentity refuses a data_dir that another cluster or node made.
func checkIdentity(id identity, cfg *config.Node) error {
	if id.Cluster != cfg.Cluster {
		return fmt.Errorf("data_dir %s belongs to cluster %q (id %s), but this node is configured for cluster %q: %w",
			cfg.DataDir, id.Cluster, id.ClusterID, cfg.Cluster, ErrForeignDataDir)
	}
	if id.Node != cfg.Name {
		return fmt.Errorf("data_dir %s belongs to node %q, but this node is named %q: %w", cfg.DataDir, id.Node, cfg.Name, ErrForeignDataDir)
	}
	return nil
}
