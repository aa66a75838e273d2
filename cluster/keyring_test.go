package cluster

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

func writeKeyring(t *testing.T, keys ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyring.json")
	var raw [][]byte
	for _, k := range keys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b)
	}
	if err := config.WriteKeyring(path, raw); err != nil {
		t.Fatal(err)
	}
	return path
}

func newKeyedCluster(t *testing.T, key string) *testCluster {
	t.Helper()
	return newTestClusterWith(t, func(i int, o *Options) {
		if o.Config.Gossip.KeyringFile == "" {
			o.Config.Gossip.KeyringFile = writeKeyring(t, key)
		}
	}, "east", "west", "tiebreak")
}

// allSeeAll waits until every node's gossip sees every node alive, and
// then that it still does after several probe rounds: a member lost to a
// key change would be suspected and dropped within them.
func allSeeAll(t *testing.T, tc *testCluster, what string) {
	t.Helper()
	eventually(t, what, func() bool {
		for _, n := range tc.nodes {
			if len(n.gossip.alive()) != len(tc.nodes) {
				return false
			}
		}
		return true
	})
	time.Sleep(10 * tc.nodes[0].cfg.Gossip.ProbeInterval.D())
	for _, n := range tc.nodes {
		if got := len(n.gossip.alive()); got != len(tc.nodes) {
			t.Fatalf("%s: %s sees %d alive, want %d", what, n.Name(), got, len(tc.nodes))
		}
	}
}

// TestGossipKeyRotation: a 3-witness cluster rotates its gossip key
// (install, use, remove on every member, as witnessctl keyring does)
// without losing a member, and each keyring_file ends with the new key
// alone.
func TestGossipKeyRotation(t *testing.T) {
	oldKey, newKey := config.NewGossipKey(), config.NewGossipKey()
	tc := newKeyedCluster(t, oldKey)
	tc.leader()
	allSeeAll(t, tc, "every member alive under the old key")
	for _, op := range []string{"install", "use", "remove"} {
		for _, n := range tc.nodes {
			resp, err := dial(t, n.AdminAddr()).Keyring(ctx(t), &witnessv1.KeyringRequest{Op: op, Key: newKeyOr(op, oldKey, newKey)})
			if err != nil {
				t.Fatalf("%s on %s: %v", op, n.Name(), err)
			}
			for _, fp := range resp.GetKeys() {
				if fp == oldKey || fp == newKey {
					t.Fatalf("a key in the answer of %s", op)
				}
			}
		}
		allSeeAll(t, tc, "every member alive after "+op)
	}
	raw, _ := base64.StdEncoding.DecodeString(newKey)
	for _, n := range tc.nodes {
		keys, err := config.LoadKeyring(n.cfg.Gossip.KeyringFile)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || string(keys[0]) != string(raw) {
			t.Fatalf("%s's keyring_file holds %d keys, want the new one alone", n.Name(), len(keys))
		}
	}
	t.Run("using a key not installed is refused", func(t *testing.T) {
		_, err := dial(t, tc.nodes[0].AdminAddr()).Keyring(ctx(t), &witnessv1.KeyringRequest{Op: "use", Key: config.NewGossipKey()})
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("use of an unknown key: %v", err)
		}
	})
}

// newKeyOr: remove takes the old key; install and use the new one.
func newKeyOr(op, oldKey, newKey string) string {
	if op == "remove" {
		return oldKey
	}
	return newKey
}

// TestGossipWrongKeyCannotJoin: a gossip node with another key cannot
// join, so nothing it says (observations included) reaches the cluster.
func TestGossipWrongKeyCannotJoin(t *testing.T) {
	tc := newKeyedCluster(t, config.NewGossipKey())
	tc.leader()
	allSeeAll(t, tc, "every member alive")
	for _, key := range []string{config.NewGossipKey(), ""} {
		mc := memberlist.DefaultLANConfig()
		mc.Name = "intruder"
		mc.BindAddr, mc.BindPort = "127.0.0.1", 0
		mc.Label = "witness/" + tc.nodes[0].ClusterID()
		mc.LogOutput = discard{}
		if key != "" {
			k, _ := config.DecodeGossipKey(key)
			mc.SecretKey = k
		}
		ml, err := memberlist.Create(mc)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ml.Join([]string{tc.nodes[0].cfg.GossipAddr})
		_ = ml.Shutdown()
		if err == nil {
			t.Fatalf("a node with key %q joined", key)
		}
		for _, n := range tc.nodes {
			if _, ok := n.gossip.alive()["intruder"]; ok {
				t.Fatalf("%s sees the intruder", n.Name())
			}
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestGossipKeyringFileBad: a key of the wrong length is refused at
// start, naming the file.
func TestGossipKeyringFileBad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyring.json")
	if err := os.WriteFile(path, []byte(`["`+base64.StdEncoding.EncodeToString([]byte("short"))+`"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := nodeConfig(t, "east-1", "east")
	cfg.InitialVoters = []config.Voter{{Name: "east-1", RaftAddr: cfg.RaftAddr, GossipAddr: cfg.GossipAddr}}
	cfg.Gossip.KeyringFile = path
	n, err := Start(ctx(t), Options{Config: cfg, Logger: testLogger(t)})
	if err == nil {
		n.Close()
		t.Fatal("started with a 5-byte gossip key")
	}
	if !errors.Is(err, config.ErrKeyLength) {
		t.Fatalf("got %v, want ErrKeyLength", err)
	}
}
