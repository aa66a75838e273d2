package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var sendTime = time.Date(2026, 3, 1, 12, 0, 3, 0, time.UTC)

func testEmail(addr string, tlsConf *tls.Config) *Email {
	return &Email{
		Server:    addr,
		From:      "Witness <witness@example.com>",
		To:        []string{"oncall@example.com", "DBA Team <dba@example.com>"},
		TLSConfig: tlsConf,
		Timeout:   10 * time.Second,
		Now:       func() time.Time { return sendTime },
	}
}

func TestEmailSend(t *testing.T) {
	srv, pool := newSMTPServer(t, smtpOptions{user: "witness", pass: "pa55 word"})
	e := testEmail(srv.addr(), &tls.Config{RootCAs: pool})
	e.Username, e.Password = "witness", "pa55 word"
	if err := e.Send(t.Context(), testMessage); err != nil {
		t.Fatalf("Send: %v", err)
	}
	sess := srv.session(t)

	// AUTH only after the TLS handshake, and only then the mail.
	wantCommands := []string{"EHLO", "STARTTLS", "TLS", "EHLO", "AUTH", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"}
	if diff := cmp.Diff(wantCommands, sess.Commands); diff != "" {
		t.Errorf("SMTP commands (-want +got):\n%s", diff)
	}
	if !sess.AuthOverTLS || sess.AuthUser != "witness" || sess.AuthPass != "pa55 word" {
		t.Errorf("AUTH user %q pass %q over TLS %v, want witness, pa55 word, true", sess.AuthUser, sess.AuthPass, sess.AuthOverTLS)
	}
	if sess.MailFrom != "witness@example.com" {
		t.Errorf("MAIL FROM %q, want witness@example.com", sess.MailFrom)
	}
	if diff := cmp.Diff([]string{"oncall@example.com", "dba@example.com"}, sess.RcptTo); diff != "" {
		t.Errorf("RCPT TO (-want +got):\n%s", diff)
	}

	msg, err := mail.ReadMessage(strings.NewReader(sess.Data))
	if err != nil {
		t.Fatalf("message does not parse: %v\n%s", err, sess.Data)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatalf("Subject: %v", err)
	}
	date, err := msg.Header.Date()
	if err != nil {
		t.Fatalf("Date: %v", err)
	}
	if !date.Equal(sendTime) {
		t.Errorf("Date = %v, want %v", date, sendTime)
	}
	gotHeaders := map[string]string{
		"From":                      msg.Header.Get("From"),
		"To":                        msg.Header.Get("To"),
		"Subject":                   subject,
		"MIME-Version":              msg.Header.Get("MIME-Version"),
		"Content-Type":              msg.Header.Get("Content-Type"),
		"Content-Transfer-Encoding": msg.Header.Get("Content-Transfer-Encoding"),
		"Auto-Submitted":            msg.Header.Get("Auto-Submitted"),
		"X-Witness-Token":           msg.Header.Get("X-Witness-Token"),
	}
	wantHeaders := map[string]string{
		"From":                      `"Witness" <witness@example.com>`,
		"To":                        `<oncall@example.com>, "DBA Team" <dba@example.com>`,
		"Subject":                   "[witness] app failed over east → west (token 8): 1 step failed",
		"MIME-Version":              "1.0",
		"Content-Type":              "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "quoted-printable",
		"Auto-Submitted":            "auto-generated",
		"X-Witness-Token":           "8",
	}
	if diff := cmp.Diff(wantHeaders, gotHeaders); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if id := msg.Header.Get("Message-ID"); !regexp.MustCompile(`^<witness\.app-8-failover\.[0-9a-f]{16}@example\.com>$`).MatchString(id) {
		t.Errorf("Message-ID = %q, want <witness.app-8-failover.<random>@example.com>", id)
	}

	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatalf("body is not quoted-printable: %v", err)
	}
	// The test server's dot reader turned CRLF into "\n".
	wantBody := `Witness failed over group app from east to west.

Group:   app
Kind:    failover
From:    east
To:      west
Token:   8
At:      2026-03-01T12:00:00Z
Reason:  east failing for 10s as seen from west and tiebreak

Steps:
  ok      fence east (120ms)
  FAILED  promote west (2.1s)
          node still in recovery after promote

1 of 2 steps failed: the transition needs attention.
`
	if diff := cmp.Diff(wantBody, string(body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
}

func TestEmailMessageIDsDiffer(t *testing.T) {
	srv, pool := newSMTPServer(t, smtpOptions{})
	e := testEmail(srv.addr(), &tls.Config{RootCAs: pool})
	ids := map[string]bool{}
	for range 2 {
		if err := e.Send(t.Context(), testMessage); err != nil {
			t.Fatalf("Send: %v", err)
		}
		msg, err := mail.ReadMessage(strings.NewReader(srv.session(t).Data))
		if err != nil {
			t.Fatal(err)
		}
		ids[msg.Header.Get("Message-ID")] = true
	}
	if len(ids) != 2 {
		t.Errorf("two messages got Message-IDs %v, want two different", ids)
	}
}

func TestEmailRefusals(t *testing.T) {
	tests := []struct {
		name         string
		opts         smtpOptions
		edit         func(e *Email)
		trust        bool
		want         error
		wantCommands []string
	}{
		{
			name:         "no STARTTLS offered",
			opts:         smtpOptions{noSTARTTLS: true},
			trust:        true,
			want:         ErrNoTLS,
			wantCommands: []string{"EHLO"},
		},
		{
			name:         "no STARTTLS offered, plaintext allowed, but credentials set",
			opts:         smtpOptions{noSTARTTLS: true, user: "u", pass: "p"},
			edit:         func(e *Email) { e.AllowPlaintext, e.Username, e.Password = true, "u", "p" },
			trust:        true,
			want:         ErrNoTLS,
			wantCommands: []string{"EHLO"},
		},
		{
			name:         "certificate not trusted",
			opts:         smtpOptions{user: "u", pass: "p"},
			edit:         func(e *Email) { e.Username, e.Password = "u", "p" },
			want:         ErrDelivery,
			wantCommands: []string{"EHLO", "STARTTLS"},
		},
		{
			name:  "wrong password",
			opts:  smtpOptions{user: "u", pass: "p"},
			edit:  func(e *Email) { e.Username, e.Password = "u", "wrong" },
			trust: true,
			want:  ErrRejected,
			// net/smtp ends a failed exchange with "*" and QUIT.
			wantCommands: []string{"EHLO", "STARTTLS", "TLS", "EHLO", "AUTH", "*", "QUIT"},
		},
		{
			name:         "no AUTH offered",
			opts:         smtpOptions{noAUTH: true},
			edit:         func(e *Email) { e.Username, e.Password = "u", "p" },
			trust:        true,
			want:         ErrRejected,
			wantCommands: []string{"EHLO", "STARTTLS", "TLS", "EHLO"},
		},
		{
			name:         "recipient refused",
			opts:         smtpOptions{rejectRcpt: "dba@example.com"},
			trust:        true,
			want:         ErrRejected,
			wantCommands: []string{"EHLO", "STARTTLS", "TLS", "EHLO", "MAIL", "RCPT", "RCPT"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, pool := newSMTPServer(t, tt.opts)
			conf := &tls.Config{}
			if tt.trust {
				conf.RootCAs = pool
			}
			e := testEmail(srv.addr(), conf)
			if tt.edit != nil {
				tt.edit(e)
			}
			err := e.Send(t.Context(), testMessage)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Send error = %v, want %v", err, tt.want)
			}
			for _, other := range []error{ErrNoTLS, ErrRejected, ErrDelivery} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("Send error = %v also matches %v", err, other)
				}
			}
			sess := srv.session(t)
			if diff := cmp.Diff(tt.wantCommands, sess.Commands); diff != "" {
				t.Errorf("SMTP commands (-want +got):\n%s", diff)
			}
			if sess.Data != "" {
				t.Errorf("message delivered despite the refusal")
			}
		})
	}
}

func TestEmailPlaintextAllowed(t *testing.T) {
	srv, _ := newSMTPServer(t, smtpOptions{noSTARTTLS: true})
	e := testEmail(srv.addr(), nil)
	e.AllowPlaintext = true
	if err := e.Send(t.Context(), testMessage); err != nil {
		t.Fatalf("Send: %v", err)
	}
	sess := srv.session(t)
	if diff := cmp.Diff([]string{"EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"}, sess.Commands); diff != "" {
		t.Errorf("SMTP commands (-want +got):\n%s", diff)
	}
}

func TestEmailStalledServer(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		srv, pool := newSMTPServer(t, smtpOptions{stall: true})
		e := testEmail(srv.addr(), &tls.Config{RootCAs: pool})
		e.Timeout = 200 * time.Millisecond
		start := time.Now()
		err := e.Send(t.Context(), testMessage)
		if !errors.Is(err, ErrDelivery) {
			t.Fatalf("Send error = %v, want ErrDelivery", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Send took %v with a 200ms timeout", d)
		}
	})
	t.Run("ctx cancelled", func(t *testing.T) {
		srv, pool := newSMTPServer(t, smtpOptions{stall: true})
		e := testEmail(srv.addr(), &tls.Config{RootCAs: pool})
		e.Timeout = time.Hour
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- e.Send(ctx, testMessage) }()
		cancel()
		err := <-done
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrDelivery) {
			t.Fatalf("Send error = %v, want context.Canceled and ErrDelivery", err)
		}
	})
}

func TestEmailUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	err = testEmail(addr, nil).Send(t.Context(), testMessage)
	if !errors.Is(err, ErrDelivery) {
		t.Fatalf("Send error = %v, want ErrDelivery", err)
	}
}

func TestEmailInvalid(t *testing.T) {
	tests := []struct {
		name string
		edit func(e *Email)
	}{
		{"server without port", func(e *Email) { e.Server = "127.0.0.1" }},
		{"bad from", func(e *Email) { e.From = "not an address" }},
		{"no recipients", func(e *Email) { e.To = nil }},
		{"bad recipient", func(e *Email) { e.To = []string{"ok@example.com", "@@"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testEmail("127.0.0.1:25", nil)
			tt.edit(e)
			if err := e.Send(t.Context(), testMessage); !errors.Is(err, ErrInvalid) {
				t.Errorf("Send error = %v, want ErrInvalid", err)
			}
		})
	}
}
