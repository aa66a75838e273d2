package notify

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kinds of transition.
const (
	KindFailover   = "failover"
	KindSwitchover = "switchover"
	KindFailback   = "failback"
)

// Message is what happened in one transition of a group.
type Message struct {
	Group string
	// From is the site that was active, "" when none was.
	From string
	// To is the site that is active now.
	To    string
	Token uint64
	// Kind is KindFailover, KindSwitchover or KindFailback.
	Kind   string
	Reason string
	// At is when the transition was committed.
	At time.Time
	// Steps are the transition's steps in the order they ran.
	Steps []Step
}

// Step is the outcome of one step of a transition.
type Step struct {
	Name     string
	OK       bool
	Error    string
	Duration time.Duration
}

// deliveryID identifies one notification across retries.
func (m *Message) deliveryID() string {
	return m.Group + "-" + strconv.FormatUint(m.Token, 10) + "-" + m.Kind
}

// failed counts the steps that did not succeed.
func (m *Message) failed() int {
	n := 0
	for _, s := range m.Steps {
		if !s.OK {
			n++
		}
	}
	return n
}

// verb says what the transition did, for a subject or a sentence.
func (m *Message) verb() string {
	switch m.Kind {
	case KindFailover:
		return "failed over"
	case KindSwitchover:
		return "switched over"
	case KindFailback:
		return "failed back"
	default:
		return "moved"
	}
}

func siteOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// subject is the mail subject, before header encoding.
func (m *Message) subject() string {
	s := fmt.Sprintf("[witness] %s %s %s → %s (token %d)",
		oneLine(m.Group), m.verb(), oneLine(siteOrNone(m.From)), oneLine(m.To), m.Token)
	switch n := m.failed(); n {
	case 0:
	case 1:
		s += ": 1 step failed"
	default:
		s += fmt.Sprintf(": %d steps failed", n)
	}
	return s
}

// maxFieldLen bounds a free-text field (reason, step error) in the mail
// body, so that no line comes near SMTP's line limit.
const maxFieldLen = 900

// textBody is the plain-text mail body, lines ending in "\n".
func (m *Message) textBody() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Witness %s group %s from %s to %s.\n\n",
		m.verb(), oneLine(m.Group), oneLine(siteOrNone(m.From)), oneLine(m.To))
	field := func(name, value string) { fmt.Fprintf(&b, "%-8s %s\n", name+":", value) }
	field("Group", oneLine(m.Group))
	field("Kind", oneLine(m.Kind))
	field("From", oneLine(siteOrNone(m.From)))
	field("To", oneLine(m.To))
	field("Token", strconv.FormatUint(m.Token, 10))
	field("At", m.At.UTC().Format(time.RFC3339))
	if m.Reason != "" {
		field("Reason", shorten(oneLine(m.Reason)))
	}
	b.WriteString("\nSteps:\n")
	if len(m.Steps) == 0 {
		b.WriteString("  (none)\n")
	}
	for _, s := range m.Steps {
		outcome := "ok"
		if !s.OK {
			outcome = "FAILED"
		}
		fmt.Fprintf(&b, "  %-6s  %s (%s)\n", outcome, oneLine(s.Name), s.Duration.Round(time.Millisecond))
		if s.Error != "" {
			fmt.Fprintf(&b, "          %s\n", shorten(oneLine(s.Error)))
		}
	}
	if n := m.failed(); n > 0 {
		fmt.Fprintf(&b, "\n%d of %d steps failed: the transition needs attention.\n", n, len(m.Steps))
	}
	return b.String()
}

// oneLine replaces line breaks and other control characters by spaces, so
// that a value cannot start a new header or line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func shorten(s string) string {
	if len(s) <= maxFieldLen {
		return s
	}
	cut := maxFieldLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// payload is the webhook's JSON body.
type payload struct {
	Group  string        `json:"group"`
	From   string        `json:"from"`
	To     string        `json:"to"`
	Token  uint64        `json:"token"`
	Kind   string        `json:"kind"`
	Reason string        `json:"reason"`
	At     string        `json:"at"`
	Steps  []stepPayload `json:"steps"`
}

type stepPayload struct {
	Name       string `json:"name"`
	OK         bool   `json:"ok"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// atLayout is RFC 3339 with milliseconds.
const atLayout = "2006-01-02T15:04:05.000Z07:00"

func (m *Message) payload() payload {
	p := payload{
		Group: m.Group, From: m.From, To: m.To, Token: m.Token, Kind: m.Kind,
		Reason: m.Reason, At: m.At.UTC().Format(atLayout),
		Steps: make([]stepPayload, 0, len(m.Steps)),
	}
	for _, s := range m.Steps {
		p.Steps = append(p.Steps, stepPayload{
			Name: s.Name, OK: s.OK, Error: s.Error,
			DurationMS: s.Duration.Round(time.Millisecond).Milliseconds(),
		})
	}
	return p
}
