package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultEmailTimeout bounds a whole SMTP conversation whose Timeout is
// zero.
const DefaultEmailTimeout = 30 * time.Second

// Email sends notifications by SMTP to a list of recipients.
type Email struct {
	// Server is the submission server, host:port.
	Server string
	// From is the sender address ("Witness <witness@example.com>").
	From string
	// To are the recipient addresses.
	To []string
	// Username and Password are for AUTH PLAIN; no AUTH when Username is
	// empty. The caller reads the password from a file.
	Username string
	Password string
	// Timeout bounds the whole conversation; DefaultEmailTimeout when zero.
	Timeout time.Duration
	// AllowPlaintext lets Send go on without TLS when the server does not
	// offer STARTTLS, and only when no Username is set. By default STARTTLS
	// is required.
	AllowPlaintext bool
	// TLSConfig is used for STARTTLS; when nil, the system roots and the
	// host of Server as the name to verify.
	TLSConfig *tls.Config
	// Now gives the Date header; time.Now when nil.
	Now func() time.Time
}

// Send delivers m as one message to every recipient.
func (e *Email) Send(ctx context.Context, m Message) error {
	if err := e.send(ctx, m); err != nil {
		return fmt.Errorf("email %s: %w", e.Server, err)
	}
	return nil
}

func (e *Email) send(ctx context.Context, m Message) error {
	host, _, err := net.SplitHostPort(e.Server)
	if err != nil {
		return &reasonError{reason: ErrInvalid, err: fmt.Errorf("server: %w", err)}
	}
	from, err := mail.ParseAddress(e.From)
	if err != nil {
		return &reasonError{reason: ErrInvalid, err: fmt.Errorf("from %q: %w", e.From, err)}
	}
	if len(e.To) == 0 {
		return &reasonError{reason: ErrInvalid, err: errors.New("no recipients")}
	}
	to := make([]*mail.Address, 0, len(e.To))
	for _, s := range e.To {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return &reasonError{reason: ErrInvalid, err: fmt.Errorf("to %q: %w", s, err)}
		}
		to = append(to, a)
	}
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	msg, err := compose(&m, from, to, now())
	if err != nil {
		return fmt.Errorf("compose message: %w", err)
	}

	timeout := e.Timeout
	if timeout <= 0 {
		timeout = DefaultEmailTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", e.Server)
	if err != nil {
		return deliveryError(ctx, fmt.Errorf("connect: %w", err))
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Ending ctx closes the connection, which unblocks any read or write.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if err := e.converse(conn, host, from.Address, to, msg); err != nil {
		return deliveryError(ctx, err)
	}
	return nil
}

// converse speaks SMTP on conn from the greeting to QUIT.
func (e *Email) converse(conn net.Conn, host, from string, to []*mail.Address, msg []byte) error {
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello(localName()); err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := &tls.Config{}
		if e.TLSConfig != nil {
			cfg = e.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		if cfg.MinVersion == 0 {
			cfg.MinVersion = tls.VersionTLS12
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
	} else {
		switch {
		case !e.AllowPlaintext:
			return ErrNoTLS
		case e.Username != "":
			return &reasonError{reason: ErrNoTLS, err: errors.New("refusing to send credentials in plaintext")}
		}
	}
	if e.Username != "" {
		ok, mechs := c.Extension("AUTH")
		if !ok || !slices.Contains(strings.Fields(strings.ToUpper(mechs)), "PLAIN") {
			return &reasonError{reason: ErrRejected, err: errors.New("server offers no AUTH PLAIN")}
		}
		if err := c.Auth(smtp.PlainAuth("", e.Username, e.Password, host)); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
	}
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	for _, a := range to {
		if err := c.Rcpt(a.Address); err != nil {
			return fmt.Errorf("rcpt to %s: %w", a.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	// The message is accepted; a failed QUIT does not undo that.
	_ = c.Quit()
	return nil
}

// deliveryError classifies err: a permanent SMTP reply (5xx) is
// ErrRejected, ErrNoTLS and ErrRejected stay, anything else is ErrDelivery,
// with ctx's error when it ended.
func deliveryError(ctx context.Context, err error) error {
	if errors.Is(err, ErrNoTLS) || errors.Is(err, ErrRejected) {
		return err
	}
	var perr *textproto.Error
	if errors.As(err, &perr) && perr.Code >= 500 {
		return &reasonError{reason: ErrRejected, err: err}
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = &reasonError{reason: cerr, err: err}
	}
	return &reasonError{reason: ErrDelivery, err: err}
}

// localName is the name Send gives in EHLO.
func localName() string {
	if h, err := os.Hostname(); err == nil && h != "" && !strings.ContainsAny(h, " \r\n") {
		return h
	}
	return "localhost"
}

// compose builds the message: headers, then the quoted-printable text.
// Lines end in "\n"; the SMTP client turns them into CRLF.
func compose(m *Message, from *mail.Address, to []*mail.Address, date time.Time) ([]byte, error) {
	var b bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\n", k, v) }
	header("From", from.String())
	rcpts := make([]string, len(to))
	for i, a := range to {
		rcpts[i] = a.String()
	}
	header("To", strings.Join(rcpts, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", m.subject()))
	header("Date", date.Format(time.RFC1123Z))
	header("Message-ID", messageID(m, from.Address))
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated")
	header("X-Witness-Token", strconv.FormatUint(m.Token, 10))
	b.WriteString("\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(m.textBody())); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// messageID is unique per message and names what it is about; the domain
// is the sender's.
func messageID(m *Message, from string) string {
	domain := "witness.invalid"
	if i := strings.LastIndexByte(from, '@'); i >= 0 && i < len(from)-1 {
		domain = from[i+1:]
	}
	var r [8]byte
	_, _ = rand.Read(r[:])
	local := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' {
			return c
		}
		return '_'
	}, m.deliveryID())
	return "<witness." + local + "." + hex.EncodeToString(r[:]) + "@" + domain + ">"
}
