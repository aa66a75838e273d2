package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The observation messages' wire form. A full state of 10,000 groups is
// 20,000 observations per witness, sent and received at every push/pull
// (every few seconds): in JSON that was 3 MB to build, compress,
// decompress and decode by reflection each time, the largest share of
// an idle witness's garbage. The binary form below is about a fifth of
// the size, names each string once per message (a group's name is shared
// by its sites' observations, a site's or probe's name or a repeated
// error by thousands), and decodes into one slice sized in advance.
//
// A message is obsMagic, then the version and the header, then the
// observations. Integers are varints; times are relative to Sent (with
// wrap-around, so any int64 comes back exactly); a string is a reference:
// 0 the empty string, 1 a new string (its length and bytes follow; it
// takes the next number), n ≥ 2 the (n-2)th new string of the message.

// obsMagic starts every binary observation message; a JSON message of
// version 1 started with '{'.
const obsMagic = 0xa7

const (
	msgFull = 1 << iota
	msgBeat
)

const (
	obsDB = 1 << iota
	obsStreaming
)

// errObsMsg is a malformed observation message.
var errObsMsg = errors.New("malformed observation message")

// obsEncoder writes one message. Its zero value is ready.
type obsEncoder struct {
	buf   []byte
	sent  int64
	names map[string]uint64 // string -> its reference
}

// header starts a message of m's header fields and n observations.
func (e *obsEncoder) header(m *obsMsg, n int) {
	if e.buf == nil {
		// About 30 bytes an observation, each of its names sent once.
		e.buf = make([]byte, 0, 64+32*n)
	}
	e.buf = append(e.buf[:0], obsMagic)
	e.buf = binary.AppendUvarint(e.buf, uint64(m.V))
	var flags byte
	if m.Full {
		flags |= msgFull
	}
	if m.Beat {
		flags |= msgBeat
	}
	e.buf = append(e.buf, flags)
	e.str(m.Node)
	e.str(m.Site)
	e.buf = binary.AppendUvarint(e.buf, m.Inc)
	e.buf = binary.AppendUvarint(e.buf, m.Ver)
	e.buf = binary.AppendUvarint(e.buf, m.From)
	e.buf = binary.AppendVarint(e.buf, m.Sent)
	e.buf = binary.AppendVarint(e.buf, m.FreshAt-m.Sent)
	e.buf = binary.AppendUvarint(e.buf, uint64(n))
	e.sent = m.Sent
}

// obs appends one observation; the message must have been started with
// header for as many as are appended.
func (e *obsEncoder) obs(w *wireObs) {
	e.str(w.Group)
	e.str(w.Site)
	e.str(w.Probe)
	var flags byte
	if w.DB {
		flags |= obsDB
	}
	if w.Streaming {
		flags |= obsStreaming
	}
	e.buf = append(e.buf, w.State, flags)
	e.buf = binary.AppendVarint(e.buf, w.Since-e.sent)
	e.buf = binary.AppendVarint(e.buf, w.At-e.sent)
	if w.DB {
		e.str(w.Role)
		e.buf = binary.AppendVarint(e.buf, w.LagBytes)
		e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(w.LagSecond))
		e.buf = binary.AppendUvarint(e.buf, w.WAL)
		e.buf = binary.AppendUvarint(e.buf, w.Replayed)
		e.buf = binary.AppendUvarint(e.buf, uint64(w.Timeline))
		e.str(w.Node)
	}
	e.str(w.Detail)
}

func (e *obsEncoder) str(s string) {
	if s == "" {
		e.buf = append(e.buf, 0)
		return
	}
	if ref, ok := e.names[s]; ok {
		e.buf = binary.AppendUvarint(e.buf, ref)
		return
	}
	if e.names == nil {
		e.names = map[string]uint64{}
	}
	e.names[s] = uint64(len(e.names)) + 2
	e.buf = append(e.buf, 1)
	e.buf = binary.AppendUvarint(e.buf, uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// encodeObs is m in wire form.
func encodeObs(m obsMsg) []byte {
	var e obsEncoder
	e.header(&m, len(m.Obs))
	for i := range m.Obs {
		e.obs(&m.Obs[i])
	}
	return e.buf
}

// obsDecoder reads one message.
type obsDecoder struct {
	b     []byte
	err   error
	names []string
	// intern, if set, gives the string held already for the bytes, if
	// any, so that a received observation shares its group's, site's
	// and probe's names with the rest instead of a copy per message.
	intern func([]byte) (string, bool)
}

func (d *obsDecoder) fail() {
	if d.err == nil {
		d.err = errObsMsg
	}
	d.b = nil
}

func (d *obsDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *obsDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *obsDecoder) byte1() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *obsDecoder) str() string {
	switch ref := d.uvarint(); {
	case d.err != nil || ref == 0:
		return ""
	case ref == 1:
		n := d.uvarint()
		if d.err != nil || n > uint64(len(d.b)) {
			d.fail()
			return ""
		}
		raw := d.b[:n]
		d.b = d.b[n:]
		s, ok := "", false
		if d.intern != nil {
			s, ok = d.intern(raw)
		}
		if !ok {
			s = string(raw)
		}
		d.names = append(d.names, s)
		return s
	case ref-2 < uint64(len(d.names)):
		return d.names[ref-2]
	default:
		d.fail()
		return ""
	}
}

// decodeObs reads a message that encodeObs wrote into m.
func decodeObs(b []byte, m *obsMsg, intern func([]byte) (string, bool)) error {
	if len(b) == 0 || b[0] != obsMagic {
		if len(b) > 0 && b[0] == '{' {
			return fmt.Errorf("%w: JSON, of version 1", errObsVersion)
		}
		return errObsMsg
	}
	d := &obsDecoder{b: b[1:], intern: intern}
	v := d.uvarint()
	if v != gossipVersion {
		if d.err != nil {
			return d.err
		}
		return fmt.Errorf("%w: %d", errObsVersion, v)
	}
	m.V = int(v)
	flags := d.byte1()
	m.Full, m.Beat = flags&msgFull != 0, flags&msgBeat != 0
	m.Node = d.str()
	m.Site = d.str()
	m.Inc = d.uvarint()
	m.Ver = d.uvarint()
	m.From = d.uvarint()
	m.Sent = d.varint()
	m.FreshAt = m.Sent + d.varint()
	n := d.uvarint()
	// Every observation takes at least 8 bytes: a count larger than
	// what is left is a lie, not a reason to allocate.
	if d.err != nil || n > uint64(len(d.b))/8 {
		d.fail()
		return d.err
	}
	if n > 0 {
		m.Obs = make([]wireObs, n)
	}
	for i := range m.Obs {
		w := &m.Obs[i]
		w.Group = d.str()
		w.Site = d.str()
		w.Probe = d.str()
		w.State = d.byte1()
		flags := d.byte1()
		w.DB, w.Streaming = flags&obsDB != 0, flags&obsStreaming != 0
		w.Since = m.Sent + d.varint()
		w.At = m.Sent + d.varint()
		if w.DB {
			w.Role = d.str()
			w.LagBytes = d.varint()
			if len(d.b) < 8 {
				d.fail()
				break
			}
			w.LagSecond = math.Float64frombits(binary.LittleEndian.Uint64(d.b))
			d.b = d.b[8:]
			w.WAL = d.uvarint()
			w.Replayed = d.uvarint()
			tl := d.uvarint()
			if tl > math.MaxUint32 {
				d.fail()
			}
			w.Timeline = uint32(tl)
			w.Node = d.str()
		}
		w.Detail = d.str()
		if d.err != nil {
			break
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return d.err
}

// errObsVersion is a message of another version of the protocol.
var errObsVersion = errors.New("observation message of another version")
