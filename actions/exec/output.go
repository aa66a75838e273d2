package exec

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// maxLastLine bounds the line of output quoted in an error.
const maxLastLine = 200

// boundedOutput collects a command's combined output within a limit: it keeps
// the first half of the limit and the last half, and counts what fell in
// between. Writes never fail, so a chatty command is never blocked or
// killed by a full buffer.
type boundedOutput struct {
	mu      sync.Mutex
	headCap int
	tailCap int
	head    []byte
	tail    []byte // the last bytes seen; trimmed to tailCap lazily
	total   int64
}

func newBoundedOutput(limit int) *boundedOutput {
	headCap := limit / 2
	return &boundedOutput{headCap: headCap, tailCap: limit - headCap}
}

func (b *boundedOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	b.total += int64(n)
	if room := b.headCap - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	if len(p) == 0 || b.tailCap == 0 {
		return n, nil
	}
	if len(p) >= b.tailCap {
		b.tail = append(b.tail[:0], p[len(p)-b.tailCap:]...)
		return n, nil
	}
	b.tail = append(b.tail, p...)
	if len(b.tail) > 2*b.tailCap {
		b.tail = append(b.tail[:0], b.tail[len(b.tail)-b.tailCap:]...)
	}
	return n, nil
}

// String returns the kept output with, where bytes were dropped, a line
// saying how many.
func (b *boundedOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	tail := b.tail
	if len(tail) > b.tailCap {
		tail = tail[len(tail)-b.tailCap:]
	}
	dropped := b.total - int64(len(b.head)) - int64(len(tail))
	if dropped == 0 {
		return strings.ToValidUTF8(string(b.head)+string(tail), "\uFFFD")
	}
	head, tailStr := trimRuneEnd(b.head), trimRuneStart(tail)
	var s strings.Builder
	s.WriteString(strings.ToValidUTF8(head, "\uFFFD"))
	if head != "" && !strings.HasSuffix(head, "\n") {
		s.WriteByte('\n')
	}
	fmt.Fprintf(&s, "[witness: %d bytes of output dropped]\n", dropped)
	s.WriteString(strings.ToValidUTF8(tailStr, "\uFFFD"))
	return s.String()
}

// lastLine returns the last non-empty line of the kept output, shortened
// to maxLastLine bytes.
func (b *boundedOutput) lastLine() string {
	s := strings.TrimRight(b.String(), " \t\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSpace(s)
	if len(s) > maxLastLine {
		s = trimRuneEnd([]byte(s[:maxLastLine])) + "…"
	}
	return s
}

// trimRuneEnd drops a rune cut in two at the end of b.
func trimRuneEnd(b []byte) string {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return string(b[:i])
			}
			break
		}
	}
	return string(b)
}

// trimRuneStart drops continuation bytes of a rune cut in two at the start
// of b.
func trimRuneStart(b []byte) string {
	i := 0
	for i < len(b) && i < utf8.UTFMax-1 && !utf8.RuneStart(b[i]) {
		i++
	}
	return string(b[i:])
}
