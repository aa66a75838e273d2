package config

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Gossip encryption. gossip.keyring_file holds a JSON list of base64 keys
// of 16, 24 or 32 bytes (AES-128, -192, -256), the primary first, as
// Consul's and Nomad's keyring files do. Every gossip message is then
// encrypted and authenticated with the primary key, and a message under
// any key of the ring is read; a message under no key is dropped, so a
// node without the key can neither join nor have its observations count.

// ErrKeyLength: a gossip key is not 16, 24 or 32 bytes.
var ErrKeyLength = errors.New("a gossip key is 16, 24 or 32 bytes, base64")

// DecodeGossipKey decodes one base64 key and checks its length.
func DecodeGossipKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyLength, err)
	}
	switch len(k) {
	case 16, 24, 32:
		return k, nil
	}
	return nil, fmt.Errorf("%w: this one is %d bytes", ErrKeyLength, len(k))
}

// LoadKeyring reads a keyring file: the keys, the primary first. Each
// problem names the file and the key's index.
func LoadKeyring(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{Field: "gossip.keyring_file", Value: path, Err: fmt.Errorf("%w: %v", ErrUnreadable, err)}}
	}
	var enc []string
	if err := json.Unmarshal(data, &enc); err != nil {
		return nil, Errors{{Field: "gossip.keyring_file", Value: path, Err: fmt.Errorf("%w: want a JSON list of base64 keys: %v", ErrSyntax, err)}}
	}
	if len(enc) == 0 {
		return nil, Errors{{Field: "gossip.keyring_file", Value: path, Err: fmt.Errorf("%w: no key in it", ErrRequired)}}
	}
	var p problems
	keys := make([][]byte, 0, len(enc))
	for i, s := range enc {
		k, err := DecodeGossipKey(s)
		if err != nil {
			p.add(fmt.Sprintf("%s: [%d]", path, i), "", err)
			continue
		}
		keys = append(keys, k)
	}
	if err := p.err(); err != nil {
		return nil, fmt.Errorf("gossip.keyring_file:\n%w", err)
	}
	return keys, nil
}

// WriteKeyring replaces the keyring file with keys, the primary first,
// by a rename, readable by its owner only.
func WriteKeyring(path string, keys [][]byte) error {
	enc := make([]string, len(keys))
	for i, k := range keys {
		enc[i] = base64.StdEncoding.EncodeToString(k)
	}
	data, err := json.MarshalIndent(enc, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// NewGossipKey returns a new random 32-byte key, base64.
func NewGossipKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}
