package zoneserver

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// Errors returned by New and Start.
var (
	// ErrInvalidConfig means the Config cannot describe a zone: no zone
	// name, a key whose secret is not base64, a record outside the zone or
	// records that conflict.
	ErrInvalidConfig = errors.New("invalid zone server config")
	// ErrStarted means Start was called on a server that is already running
	// or has been closed.
	ErrStarted = errors.New("zone server already started")
)

// Log keys.
const (
	logKeyZone   = "zone"
	logKeyKey    = "key"
	logKeyRcode  = "rcode"
	logKeySerial = "serial"
	logKeyPeer   = "peer"
	logKeyErr    = "err"
	logKeyAddr   = "addr"
)

// tsigFudge is the time window, in seconds, given on signed responses.
const tsigFudge = 300

// Config describes the zone and who may update it.
type Config struct {
	// Zone is the zone's apex, e.g. "example.test." (the dot is optional).
	Zone string
	// Keys maps TSIG key names to base64 secrets. Any of them may update
	// the zone, with any HMAC algorithm miekg/dns supports. With no keys,
	// every update is refused.
	Keys map[string]string
	// Records is the initial content. Without an SOA at the apex one is made
	// (serial 1, MINIMUM 60 s); without NS records at the apex,
	// "ns.<zone>" is used.
	Records []mdns.RR
	// Logger receives one line per update; nil discards.
	Logger *slog.Logger
}

// Server is a running (or ready) zone server. Its methods are safe for
// concurrent use.
type Server struct {
	origin string
	keys   map[string]string
	log    *slog.Logger

	mu      sync.RWMutex
	zone    *zone // replaced, never modified, under mu
	updates int   // update messages answered, under mu

	life    sync.Mutex // guards the fields below
	started bool
	addr    string
	servers []*mdns.Server
	wg      sync.WaitGroup
}

// New checks cfg and builds a server holding the zone. It does not listen
// until Start.
func New(cfg Config) (*Server, error) {
	if cfg.Zone == "" {
		return nil, fmt.Errorf("zone name is empty: %w", ErrInvalidConfig)
	}
	if _, ok := mdns.IsDomainName(cfg.Zone); !ok {
		return nil, fmt.Errorf("zone %q is not a domain name: %w", cfg.Zone, ErrInvalidConfig)
	}
	origin := mdns.CanonicalName(cfg.Zone)
	keys := make(map[string]string, len(cfg.Keys)) // never nil: nil would skip TSIG checks
	for name, secret := range cfg.Keys {
		raw, err := base64.StdEncoding.DecodeString(secret)
		if err != nil || len(raw) == 0 {
			return nil, fmt.Errorf("key %q: secret is not base64: %w", name, ErrInvalidConfig)
		}
		keys[mdns.CanonicalName(name)] = secret
	}
	z, err := load(origin, cfg.Records)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		origin: origin,
		keys:   keys,
		log:    log.With("component", "zoneserver", logKeyZone, origin),
		zone:   z,
	}, nil
}

// Start listens on addr ("127.0.0.1:0" picks a free port) for UDP and TCP on
// the same port and serves until Close. The bound address is Addr.
func (s *Server) Start(addr string) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.started {
		return ErrStarted
	}
	pc, ln, err := listenBoth(addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.started = true
	s.addr = pc.LocalAddr().String()
	handler := mdns.HandlerFunc(s.serve)
	for _, srv := range []*mdns.Server{
		{PacketConn: pc, Net: "udp"},
		{Listener: ln, Net: "tcp"},
	} {
		srv.Handler = handler
		srv.TsigSecret = s.keys
		srv.MsgAcceptFunc = accept
		ready := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(ready) }
		failed := make(chan error, 1)
		s.wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil {
				failed <- err
			}
		})
		select {
		case <-ready:
			s.servers = append(s.servers, srv)
		case err := <-failed:
			s.shutdownLocked()
			pc.Close()
			ln.Close()
			return fmt.Errorf("serve %s on %s: %w", srv.Net, s.addr, err)
		}
	}
	s.log.Info("serving", logKeyAddr, s.addr)
	return nil
}

// listenBoth binds UDP and TCP on the same port. With port 0 the UDP port is
// picked first and TCP tries to follow it; a few retries cover the case where
// another program holds that TCP port.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		bound := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		ln, err := net.Listen("tcp", net.JoinHostPort(host, bound))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, lastErr
}

// Addr is the bound "host:port", empty before Start.
func (s *Server) Addr() string {
	s.life.Lock()
	defer s.life.Unlock()
	return s.addr
}

// Close stops serving and waits for the serving goroutines. The zone stays
// readable with Records. Close is idempotent.
func (s *Server) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	s.started = true // a closed server cannot be started again
	return s.shutdownLocked()
}

func (s *Server) shutdownLocked() error {
	var errs []error
	for _, srv := range s.servers {
		if err := srv.Shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	s.servers = nil
	s.wg.Wait()
	return errors.Join(errs...)
}

// Records returns copies of the RRs at name of type qtype (mdns.TypeANY: all
// types), in a stable order. It is meant for tests and diagnostics.
func (s *Server) Records(name string, qtype uint16) []mdns.RR {
	s.mu.RLock()
	z := s.zone
	s.mu.RUnlock()
	node := z.nodes[mdns.CanonicalName(name)]
	var out []mdns.RR
	for _, t := range sortedTypes(node) {
		if qtype != mdns.TypeANY && t != qtype {
			continue
		}
		for _, rr := range node[t] {
			out = append(out, mdns.Copy(rr))
		}
	}
	return out
}

// Updates is how many signed update messages the server has answered,
// applied or refused.
func (s *Server) Updates() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.updates
}

// Serial is the current SOA serial.
func (s *Server) Serial() uint32 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.zone.soa().Serial
}

// accept lets queries and updates through to the handler; the handler checks
// the sections itself.
func accept(dh mdns.Header) mdns.MsgAcceptAction {
	const qrBit = 1 << 15
	if dh.Bits&qrBit != 0 {
		return mdns.MsgIgnore
	}
	switch opcode := int(dh.Bits>>11) & 0xF; opcode {
	case mdns.OpcodeQuery, mdns.OpcodeUpdate:
		return mdns.MsgAccept
	default:
		return mdns.MsgRejectNotImplemented
	}
}

func (s *Server) serve(w mdns.ResponseWriter, req *mdns.Msg) {
	resp := s.handle(req, w.TsigStatus())
	if _, udp := w.LocalAddr().(*net.UDPAddr); udp {
		size := mdns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), mdns.MinMsgSize)
		}
		resp.Truncate(size)
	}
	if err := w.WriteMsg(resp); err != nil {
		s.log.Warn("write response", logKeyPeer, w.RemoteAddr().String(), logKeyErr, err)
	}
}

// handle builds the response to req. tsigStatus is the verification result
// of req's TSIG, if it has one.
func (s *Server) handle(req *mdns.Msg, tsigStatus error) *mdns.Msg {
	resp := new(mdns.Msg)
	resp.SetRcode(req, mdns.RcodeSuccess)
	tsig := req.IsTsig()
	if tsig != nil {
		if terr := tsigError(tsigStatus); terr != mdns.RcodeSuccess {
			s.log.Warn("bad tsig", logKeyKey, tsig.Hdr.Name, logKeyRcode, mdns.RcodeToString[terr], logKeyErr, tsigStatus)
			resp.Rcode = mdns.RcodeNotAuth
			signResponse(resp, tsig, terr)
			return resp
		}
	}
	switch req.Opcode {
	case mdns.OpcodeQuery:
		s.query(req, resp)
	case mdns.OpcodeUpdate:
		if tsig == nil {
			resp.Rcode = mdns.RcodeRefused
			s.log.Warn("unsigned update refused")
			return resp
		}
		resp.Rcode = s.update(req)
		s.mu.Lock()
		s.updates++
		s.mu.Unlock()
		s.log.Info("update", logKeyKey, tsig.Hdr.Name, logKeyRcode, mdns.RcodeToString[resp.Rcode], logKeySerial, s.Serial())
	default:
		resp.Rcode = mdns.RcodeNotImplemented
	}
	if tsig != nil {
		signResponse(resp, tsig, mdns.RcodeSuccess)
	}
	return resp
}

// tsigError maps miekg's verification error to the TSIG error code.
func tsigError(status error) int {
	switch {
	case status == nil:
		return mdns.RcodeSuccess
	case errors.Is(status, mdns.ErrSecret), errors.Is(status, mdns.ErrKeyAlg):
		return mdns.RcodeBadKey
	case errors.Is(status, mdns.ErrTime):
		return mdns.RcodeBadTime
	default:
		return mdns.RcodeBadSig
	}
}

// signResponse adds the TSIG RR that the response writer signs. With BADKEY
// or BADSIG it stays unsigned (RFC 8945 section 5.3.2); with BADTIME it
// carries the server's time in Other Data.
func signResponse(resp *mdns.Msg, reqTsig *mdns.TSIG, tsigErr int) {
	now := time.Now().Unix()
	signed := now
	if tsigErr == mdns.RcodeBadTime {
		signed = int64(reqTsig.TimeSigned)
	}
	resp.SetTsig(reqTsig.Hdr.Name, reqTsig.Algorithm, tsigFudge, signed)
	t := resp.IsTsig()
	t.Error = uint16(tsigErr)
	if tsigErr == mdns.RcodeBadTime {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(now))
		t.OtherData = hex.EncodeToString(b[2:])
		t.OtherLen = 6
	}
}

func (s *Server) query(req, resp *mdns.Msg) {
	if len(req.Question) != 1 {
		resp.Rcode = mdns.RcodeFormatError
		return
	}
	q := req.Question[0]
	s.mu.RLock()
	z := s.zone
	s.mu.RUnlock()
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY || !z.inZone(q.Name) {
		resp.Rcode = mdns.RcodeRefused
		return
	}
	answer, authority, rcode := z.lookup(q.Name, q.Qtype)
	resp.Authoritative = true
	resp.Rcode = rcode
	resp.Answer = copyRRs(answer, q.Name)
	resp.Ns = copyRRs(authority, "")
}

// copyRRs copies rrs; the first RRset's owner takes the spelling of qname
// (0x20 case randomisation) when qname is not empty.
func copyRRs(rrs []mdns.RR, qname string) []mdns.RR {
	out := make([]mdns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = mdns.Copy(rr)
		if qname != "" && mdns.CanonicalName(qname) == rr.Header().Name {
			out[i].Header().Name = mdns.Fqdn(qname)
		}
	}
	return out
}

// update runs an RFC 2136 update: zone section, prerequisites, prescan, then
// the changes on a clone that is swapped in only when everything held.
func (s *Server) update(req *mdns.Msg) int {
	if len(req.Question) != 1 || req.Question[0].Qtype != mdns.TypeSOA {
		return mdns.RcodeFormatError
	}
	if mdns.CanonicalName(req.Question[0].Name) != s.origin || req.Question[0].Qclass != mdns.ClassINET {
		return mdns.RcodeNotAuth
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rcode := s.zone.checkPrerequisites(req.Answer); rcode != mdns.RcodeSuccess {
		return rcode
	}
	if rcode := s.zone.prescan(req.Ns); rcode != mdns.RcodeSuccess {
		return rcode
	}
	next := s.zone.clone()
	changed, soaReplaced := next.applyUpdates(req.Ns)
	if !changed {
		return mdns.RcodeSuccess
	}
	if !soaReplaced {
		next.bumpSerial()
	}
	s.zone = next
	return mdns.RcodeSuccess
}
