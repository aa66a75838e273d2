package fsm

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"google.golang.org/protobuf/proto"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Snapshot framing: magic, format version, the State marshalled, then a
// CRC-32C of everything before it.
var snapshotMagic = [4]byte{'W', 'S', 'N', 'P'}

const snapshotVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MarshalSnapshot encodes a state for a snapshot file.
func MarshalSnapshot(s *witnessv1.State) ([]byte, error) {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("marshal snapshot: %w", err)
	}
	out := make([]byte, 0, len(snapshotMagic)+1+len(body)+4)
	out = append(out, snapshotMagic[:]...)
	out = append(out, snapshotVersion)
	out = append(out, body...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, castagnoli)), nil
}

// UnmarshalSnapshot decodes what MarshalSnapshot made. A truncated, altered
// or foreign file is ErrCorruptSnapshot.
func UnmarshalSnapshot(b []byte) (*witnessv1.State, error) {
	if len(b) < len(snapshotMagic)+1+4 || [4]byte(b[:4]) != snapshotMagic {
		return nil, fmt.Errorf("unmarshal snapshot: bad header: %w", ErrCorruptSnapshot)
	}
	if b[4] != snapshotVersion {
		return nil, fmt.Errorf("unmarshal snapshot: version %d: %w", b[4], ErrCorruptSnapshot)
	}
	n := len(b) - 4
	if crc32.Checksum(b[:n], castagnoli) != binary.BigEndian.Uint32(b[n:]) {
		return nil, fmt.Errorf("unmarshal snapshot: checksum mismatch: %w", ErrCorruptSnapshot)
	}
	s := &witnessv1.State{}
	if err := proto.Unmarshal(b[5:n], s); err != nil {
		return nil, fmt.Errorf("unmarshal snapshot: %w: %w", ErrCorruptSnapshot, err)
	}
	return s, nil
}
