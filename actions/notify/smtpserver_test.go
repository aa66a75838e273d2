package notify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"io"
	"math/big"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCert makes a self-signed certificate for 127.0.0.1 and returns the
// server's TLS configuration and a pool that trusts it.
func testCert(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtp test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// smtpOptions shape the test server's behaviour.
type smtpOptions struct {
	noSTARTTLS bool   // do not offer STARTTLS
	noAUTH     bool   // do not offer AUTH
	user, pass string // accepted credentials
	rejectRcpt string // answer 550 to RCPT TO this address
	stall      bool   // greet, then never answer
}

// smtpSession is what the test server saw on one connection.
type smtpSession struct {
	// Commands are the command verbs in order, with "TLS" where the TLS
	// handshake completed.
	Commands []string
	// AuthUser and AuthPass are the decoded AUTH PLAIN credentials, and
	// AuthOverTLS whether they came after STARTTLS.
	AuthUser, AuthPass string
	AuthOverTLS        bool
	MailFrom           string
	RcptTo             []string
	// Data is the message as received, dot-unstuffed, lines ending in \n.
	Data string
}

// smtpServer is a small SMTP server on 127.0.0.1 that speaks enough of RFC
// 5321, STARTTLS (RFC 3207) and AUTH PLAIN (RFC 4954) for Email.Send.
type smtpServer struct {
	ln       net.Listener
	opts     smtpOptions
	tlsConf  *tls.Config
	sessions chan smtpSession
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func newSMTPServer(t *testing.T, opts smtpOptions) (*smtpServer, *x509.CertPool) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conf, pool := testCert(t)
	s := &smtpServer{ln: ln, opts: opts, tlsConf: conf, sessions: make(chan smtpSession, 10)}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s, pool
}

func (s *smtpServer) addr() string { return s.ln.Addr().String() }

// session returns the next finished session.
func (s *smtpServer) session(t *testing.T) smtpSession {
	t.Helper()
	select {
	case sess := <-s.sessions:
		return sess
	case <-time.After(10 * time.Second):
		t.Fatal("no SMTP session finished")
		return smtpSession{}
	}
}

func (s *smtpServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.sessions <- s.handle(c)
		}()
	}
}

func (s *smtpServer) handle(conn net.Conn) smtpSession {
	var sess smtpSession
	tp := textproto.NewConn(conn)
	reply := func(lines ...string) {
		for _, l := range lines {
			if tp.PrintfLine("%s", l) != nil {
				return
			}
		}
	}
	reply("220 smtp.test ESMTP")
	if s.opts.stall {
		io.Copy(io.Discard, conn)
		return sess
	}
	isTLS := false
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return sess
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		sess.Commands = append(sess.Commands, verb)
		switch verb {
		case "EHLO":
			lines := []string{"250-smtp.test"}
			if !s.opts.noSTARTTLS && !isTLS {
				lines = append(lines, "250-STARTTLS")
			}
			if !s.opts.noAUTH {
				lines = append(lines, "250-AUTH LOGIN PLAIN")
			}
			reply(append(lines, "250 8BITMIME")...)
		case "HELO", "NOOP", "RSET":
			reply("250 ok")
		case "STARTTLS":
			if s.opts.noSTARTTLS || isTLS {
				reply("502 not here")
				continue
			}
			reply("220 go ahead")
			tc := tls.Server(conn, s.tlsConf)
			if err := tc.Handshake(); err != nil {
				return sess
			}
			conn, isTLS = tc, true
			tp = textproto.NewConn(tc)
			sess.Commands = append(sess.Commands, "TLS")
		case "AUTH":
			mech, initial, _ := strings.Cut(arg, " ")
			if s.opts.noAUTH || !strings.EqualFold(mech, "PLAIN") {
				reply("504 unrecognized mechanism")
				continue
			}
			if initial == "" {
				reply("334 ")
				if initial, err = tp.ReadLine(); err != nil {
					return sess
				}
			}
			raw, err := base64.StdEncoding.DecodeString(initial)
			parts := strings.Split(string(raw), "\x00")
			if err != nil || len(parts) != 3 {
				reply("501 malformed")
				continue
			}
			sess.AuthUser, sess.AuthPass, sess.AuthOverTLS = parts[1], parts[2], isTLS
			if parts[1] != s.opts.user || parts[2] != s.opts.pass {
				reply("535 5.7.8 authentication credentials invalid")
				continue
			}
			reply("235 2.7.0 authenticated")
		case "MAIL":
			sess.MailFrom = angle(arg)
			reply("250 ok")
		case "RCPT":
			to := angle(arg)
			if to == s.opts.rejectRcpt {
				reply("550 5.1.1 no such user")
				continue
			}
			sess.RcptTo = append(sess.RcptTo, to)
			reply("250 ok")
		case "DATA":
			reply("354 end with .")
			data, err := io.ReadAll(tp.DotReader())
			if err != nil {
				return sess
			}
			sess.Data = string(data)
			reply("250 queued")
		case "QUIT":
			reply("221 bye")
			return sess
		default:
			reply("502 unknown command")
		}
	}
}

// angle returns the address in "FROM:<a@b> BODY=8BITMIME".
func angle(arg string) string {
	_, rest, ok := strings.Cut(arg, "<")
	if !ok {
		return ""
	}
	addr, _, _ := strings.Cut(rest, ">")
	return addr
}
