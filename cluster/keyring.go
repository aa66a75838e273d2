package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"

	"github.com/hashicorp/memberlist"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// gossipKeys is a node's gossip keyring and the file it is kept in.
type gossipKeys struct {
	mu   sync.Mutex // one change at a time, file and ring together
	ring *memberlist.Keyring
	file string
}

// gossipEncryption sets memberlist's keyring from gossip.keyring_file,
// when set: every message is encrypted with the primary key, and with
// verify_incoming a message under no key of the ring is dropped.
func (n *Node) gossipEncryption(mc *memberlist.Config) error {
	g := n.cfg.Gossip
	if g.KeyringFile == "" {
		n.log.Warn("gossip is not encrypted: set gossip.keyring_file (witnessd keygen makes a key)")
		return nil
	}
	keys, err := config.LoadKeyring(g.KeyringFile)
	if err != nil {
		return err
	}
	ring, err := memberlist.NewKeyring(keys, keys[0])
	if err != nil {
		return err
	}
	mc.Keyring = ring
	mc.GossipVerifyIncoming = g.VerifyIncoming == nil || *g.VerifyIncoming
	mc.GossipVerifyOutgoing = g.VerifyOutgoing == nil || *g.VerifyOutgoing
	n.keys = &gossipKeys{ring: ring, file: g.KeyringFile}
	return nil
}

func keyFingerprint(k []byte) string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:8])
}

// Keyring serves witnessctl keyring on this witness only.
func (s *adminServer) Keyring(ctx context.Context, req *witnessv1.KeyringRequest) (*witnessv1.KeyringResponse, error) {
	k := s.n.keys
	if k == nil {
		return nil, status.Error(codes.FailedPrecondition, "gossip is not encrypted on this witness: set gossip.keyring_file")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var key []byte
	if req.GetOp() != "list" {
		var err error
		if key, err = config.DecodeGossipKey(req.GetKey()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "key: %v", err)
		}
	}
	var err error
	switch req.GetOp() {
	case "list":
	case "install":
		err = k.ring.AddKey(key)
	case "use":
		if !hasKey(k.ring.GetKeys(), key) {
			return nil, status.Error(codes.FailedPrecondition, "the key is not installed here: install it on every member first")
		}
		err = k.ring.UseKey(key)
	case "remove":
		if !hasKey(k.ring.GetKeys(), key) {
			break // already gone: removing is idempotent
		}
		err = k.ring.RemoveKey(key)
	default:
		return nil, status.Errorf(codes.InvalidArgument, "op %q: want list, install, use or remove", req.GetOp())
	}
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%s: %v", req.GetOp(), err)
	}
	primary := k.ring.GetPrimaryKey()
	keys := [][]byte{primary}
	for _, x := range k.ring.GetKeys() {
		if !bytes.Equal(x, primary) {
			keys = append(keys, x)
		}
	}
	if req.GetOp() != "list" {
		if err := config.WriteKeyring(k.file, keys); err != nil {
			return nil, status.Errorf(codes.Internal, "the ring changed, but writing %s failed (a restart would lose it): %v", k.file, err)
		}
		s.n.log.Info("gossip keyring changed", "op", req.GetOp(), "key", keyFingerprint(key), "by", callerIdentity(ctx))
	}
	resp := &witnessv1.KeyringResponse{Node: s.n.cfg.Name, Primary: keyFingerprint(primary)}
	for _, x := range keys {
		resp.Keys = append(resp.Keys, keyFingerprint(x))
	}
	return resp, nil
}

func hasKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}
