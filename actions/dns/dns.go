package dns

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Errors of the package, to test with errors.Is.
var (
	// ErrLowerToken: the fence holds a higher token than the one asked;
	// nothing was sent.
	ErrLowerToken = errors.New("fence holds a higher token")
	// ErrStaleToken: the DNS server refused the update's prerequisite
	// (NXRRSET or YXRRSET) because the fence changed after it was read:
	// someone else wrote in between. The error is a *RcodeError.
	ErrStaleToken = errors.New("fence changed since it was read")
	// ErrTSIG: the server did not accept the TSIG key (NOTAUTH, BADSIG,
	// BADKEY, BADTIME), its response did not verify, or the Key is unusable.
	ErrTSIG = errors.New("tsig authentication failed")
	// ErrUnreachable: no answer from the server within the timeout
	// (connection refused, timeout, connection closed).
	ErrUnreachable = errors.New("dns server unreachable")
	// ErrBadFence: the fence TXT record exists but is not exactly one
	// "token=N site=S" value.
	ErrBadFence = errors.New("malformed fence record")
	// ErrNotAuthoritative: the server answered without the AA bit, so it
	// is not the zone's authoritative server and its data cannot be trusted
	// for a compare-and-swap.
	ErrNotAuthoritative = errors.New("answer is not authoritative")
	// ErrInvalid: the Record, site, token or Client settings are unusable.
	ErrInvalid = errors.New("invalid dns action")
)

// DefaultTimeout bounds one exchange when Client.Timeout is zero, and
// Resolve when its context has no deadline.
const DefaultTimeout = 5 * time.Second

// tsigFudge is the accepted clock difference with the server, in seconds.
const tsigFudge = 300

// Outcome says what Switch did.
type Outcome string

// Outcomes of Switch.
const (
	// OutcomeSwitched: an update moved the record and the fence.
	OutcomeSwitched Outcome = "switched"
	// OutcomeUnchanged: the server already held this token, site and value.
	OutcomeUnchanged Outcome = "unchanged"
	// OutcomeDriftCorrected: the fence held this token and site but the
	// record had been changed by hand; an update put it back.
	OutcomeDriftCorrected Outcome = "drift-corrected"
)

// Key is a TSIG key.
type Key struct {
	// Name is the key's name as the server knows it, e.g. "witness-key.".
	Name string
	// Algorithm is an HMAC name such as "hmac-sha256" (the default when
	// empty), "hmac-sha512".
	Algorithm string
	// Secret is the base64 secret; surrounding white space is ignored, so
	// the content of a key file can be passed as it is.
	Secret string
}

// Record is one managed DNS record.
type Record struct {
	// Name is the owner name, inside the Client's zone.
	Name string
	// Type is "A", "AAAA", "CNAME" or "TXT".
	Type string
	// TTL of the record when written.
	TTL uint32
	// Values maps each site to the record's rdata text at that site:
	// "192.0.2.1", "app-east.example.test.", "\"text\"".
	Values map[string]string
}

// Client switches records in one zone on one authoritative server. Its
// zero Timeout means DefaultTimeout. A Client is safe for concurrent use.
type Client struct {
	// Server is the authoritative server, "host:port".
	Server string
	// Zone is the zone the updates are for, e.g. "example.test.".
	Zone string
	// Key signs the updates; required by Switch.
	Key *Key
	// Timeout bounds each exchange with the server.
	Timeout time.Duration
}

// Actual is what the server holds now for a record.
type Actual struct {
	// HasFence says whether the fence TXT record exists; Token and Site
	// are its content.
	HasFence bool
	Token    uint64
	Site     string
	// Values are the rdata texts of the record's RRset, sorted; TTL is
	// the lowest TTL among them.
	Values []string
	TTL    uint32
}

// RcodeError is an answer with an rcode that is not NOERROR (nor NXDOMAIN
// for a query). It wraps ErrStaleToken for NXRRSET and YXRRSET, and ErrTSIG
// for NOTAUTH or a TSIG error.
type RcodeError struct {
	Op    string // "update", "query", "resolve"
	Name  string // the owner name the message was about
	Rcode int
	// TSIGError is the error field of the response's TSIG RR, if any.
	TSIGError int
}

func (e *RcodeError) Error() string {
	s := fmt.Sprintf("%s %s: server answered %s", e.Op, e.Name, rcodeName(e.Rcode))
	switch {
	case e.TSIGError == mdns.RcodeBadSig:
		s += " (tsig BADSIG: the key's secret or algorithm differs from the server's)"
	case e.TSIGError == mdns.RcodeBadKey:
		s += " (tsig BADKEY: the server does not know this key name or algorithm)"
	case e.TSIGError == mdns.RcodeBadTime:
		s += " (tsig BADTIME: the clocks of client and server differ by more than the fudge)"
	case e.TSIGError != 0:
		s += " (tsig " + rcodeName(e.TSIGError) + ")"
	case e.Rcode == mdns.RcodeNotAuth:
		s += " (the key is not allowed to update, or the server is not authoritative for the zone)"
	case e.Rcode == mdns.RcodeNXRrset || e.Rcode == mdns.RcodeYXRrset:
		s += " (prerequisite failed: the fence changed since it was read)"
	}
	return s
}

// Unwrap gives the sentinel that classifies the rcode, if any.
func (e *RcodeError) Unwrap() error {
	switch {
	case e.TSIGError != 0 || e.Rcode == mdns.RcodeNotAuth:
		return ErrTSIG
	case e.Rcode == mdns.RcodeNXRrset || e.Rcode == mdns.RcodeYXRrset:
		return ErrStaleToken
	}
	return nil
}

func rcodeName(rc int) string {
	if s, ok := mdns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

// FenceName is the owner name of the record's fence TXT record.
func (r Record) FenceName() string {
	return FencePrefix + mdns.CanonicalName(r.Name)
}

// Rdata is the record's value at site in canonical text, the form Read and
// Resolve report values in.
func (r Record) Rdata(site string) (string, error) {
	rr, err := r.rrFor(site)
	if err != nil {
		return "", err
	}
	return rdataText(rr), nil
}

var supportedTypes = map[string]uint16{
	"A": mdns.TypeA, "AAAA": mdns.TypeAAAA, "CNAME": mdns.TypeCNAME, "TXT": mdns.TypeTXT,
}

// check validates name and type.
func (r Record) check() (name string, qtype uint16, err error) {
	qtype, ok := supportedTypes[strings.ToUpper(r.Type)]
	if !ok {
		return "", 0, fmt.Errorf("record %s: type %q, want A, AAAA, CNAME or TXT: %w", r.Name, r.Type, ErrInvalid)
	}
	if _, ok := mdns.IsDomainName(r.Name); !ok || r.Name == "" {
		return "", 0, fmt.Errorf("record %q: not a domain name: %w", r.Name, ErrInvalid)
	}
	return mdns.CanonicalName(r.Name), qtype, nil
}

// rrFor builds the RR the record has at site.
func (r Record) rrFor(site string) (mdns.RR, error) {
	name, qtype, err := r.check()
	if err != nil {
		return nil, err
	}
	value, ok := r.Values[site]
	if !ok {
		return nil, fmt.Errorf("record %s: no value for site %q: %w", name, site, ErrInvalid)
	}
	rr, err := mdns.NewRR(fmt.Sprintf("%s %d IN %s %s", name, r.TTL, mdns.TypeToString[qtype], value))
	if err != nil || rr == nil || rr.Header().Rrtype != qtype {
		return nil, fmt.Errorf("record %s: value %q for site %q is not %s rdata: %w", name, value, site, mdns.TypeToString[qtype], ErrInvalid)
	}
	return rr, nil
}

// rdataText is the rdata of rr in presentation format, with domain names in
// canonical (lower) case.
func rdataText(rr mdns.RR) string {
	if c, ok := rr.(*mdns.CNAME); ok {
		return mdns.CanonicalName(c.Target)
	}
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// state is what read found: Actual plus the RRs as received, which the
// update's prerequisite must repeat byte for byte.
type state struct {
	Actual
	fence   mdns.RR
	records []mdns.RR
}

// Read returns what the server holds for r: its fence and its RRset. It asks
// over TCP and insists on authoritative answers.
func (c *Client) Read(ctx context.Context, r Record) (Actual, error) {
	st, err := c.read(ctx, r)
	return st.Actual, err
}

func (c *Client) read(ctx context.Context, r Record) (state, error) {
	name, qtype, err := r.check()
	if err != nil {
		return state{}, err
	}
	if err := c.checkZone(name); err != nil {
		return state{}, err
	}
	var st state
	fences, err := c.query(ctx, r.FenceName(), mdns.TypeTXT)
	if err != nil {
		return state{}, err
	}
	switch len(fences) {
	case 0:
	case 1:
		f, err := ParseFence(strings.Join(fences[0].(*mdns.TXT).Txt, ""))
		if err != nil {
			return state{}, fmt.Errorf("read %s: %w", r.FenceName(), err)
		}
		st.HasFence, st.Token, st.Site, st.fence = true, f.Token, f.Site, fences[0]
	default:
		return state{}, fmt.Errorf("read %s: %d values, want one: %w", r.FenceName(), len(fences), ErrBadFence)
	}
	st.records, err = c.query(ctx, name, qtype)
	if err != nil {
		return state{}, err
	}
	for i, rr := range st.records {
		st.Values = append(st.Values, rdataText(rr))
		if i == 0 || rr.Header().Ttl < st.TTL {
			st.TTL = rr.Header().Ttl
		}
	}
	slices.Sort(st.Values)
	return st, nil
}

func (c *Client) checkZone(name string) error {
	if c.Zone == "" || !mdns.IsSubDomain(mdns.CanonicalName(c.Zone), name) {
		return fmt.Errorf("record %s is not in zone %q: %w", name, c.Zone, ErrInvalid)
	}
	return nil
}

// query returns the RRs of type qtype owned by name, as the authoritative
// server holds them (none for NODATA and NXDOMAIN).
func (c *Client) query(ctx context.Context, name string, qtype uint16) ([]mdns.RR, error) {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	resp, verifyErr, err := c.exchange(ctx, m, nil, "query", name)
	if err != nil {
		return nil, err
	}
	if err := responseError("query", name, resp, verifyErr); err != nil {
		var rc *RcodeError
		if !errors.As(err, &rc) || rc.Rcode != mdns.RcodeNameError {
			return nil, err
		}
	}
	if !resp.Authoritative {
		return nil, fmt.Errorf("query %s at %s: %w", name, c.Server, ErrNotAuthoritative)
	}
	var out []mdns.RR
	for _, rr := range resp.Answer {
		if h := rr.Header(); h.Rrtype == qtype && mdns.CanonicalName(h.Name) == name {
			out = append(out, rr)
		}
	}
	return out, nil
}

// Switch makes the server hold r's value for site under token, fenced: see
// the package documentation. It sends at most one update.
func (c *Client) Switch(ctx context.Context, r Record, site string, token uint64) (Outcome, error) {
	out, _, err := c.Ensure(ctx, r, site, token)
	return out, err
}

// Ensure is Switch that also returns what the server held before, for a
// caller that re-checks a record already switched and wants to say what it
// found: anything but OutcomeUnchanged means the record or its fence
// differed. The Actual is zero when the read failed.
func (c *Client) Ensure(ctx context.Context, r Record, site string, token uint64) (Outcome, Actual, error) {
	if token == 0 {
		return "", Actual{}, fmt.Errorf("switch %s: token 0: %w", r.Name, ErrInvalid)
	}
	if !validSite(site) {
		return "", Actual{}, fmt.Errorf("switch %s: bad site name %q: %w", r.Name, site, ErrInvalid)
	}
	want, err := r.rrFor(site)
	if err != nil {
		return "", Actual{}, err
	}
	if c.Key == nil {
		return "", Actual{}, fmt.Errorf("switch %s: no tsig key: %w", r.Name, ErrInvalid)
	}
	st, err := c.read(ctx, r)
	if err != nil {
		return "", Actual{}, err
	}
	out, err := c.write(ctx, r, want, site, token, st)
	return out, st.Actual, err
}

// String describes what the server held: "fence token=3 site=east,
// values [192.0.2.10] ttl 30", "no fence, no record".
func (a Actual) String() string {
	var b strings.Builder
	if a.HasFence {
		b.WriteString("fence " + Fence{Token: a.Token, Site: a.Site}.String())
	} else {
		b.WriteString("no fence")
	}
	if len(a.Values) == 0 {
		b.WriteString(", no record")
	} else {
		fmt.Fprintf(&b, ", values %v ttl %d", a.Values, a.TTL)
	}
	return b.String()
}

// write decides from st, the state read before, and sends the update whose
// prerequisite is st's fence.
func (c *Client) write(ctx context.Context, r Record, want mdns.RR, site string, token uint64, st state) (Outcome, error) {
	outcome, ch, err := change(r, want, site, token, st)
	if err != nil || ch == nil {
		return outcome, err
	}
	name := want.Header().Name
	m := new(mdns.Msg)
	m.SetUpdate(mdns.CanonicalName(c.Zone))
	m.Answer, m.Ns = ch.prereq, ch.updates
	resp, verifyErr, err := c.exchange(ctx, m, c.Key, "update", name)
	if err != nil {
		return "", err
	}
	if err := responseError("update", name, resp, verifyErr); err != nil {
		return "", err
	}
	if resp.IsTsig() == nil {
		return "", fmt.Errorf("update %s: the server's answer is not signed: %w", name, ErrTSIG)
	}
	return outcome, nil
}

// recordChange is one record's part of an update: the prerequisite on its
// fence as read, and the changes that move the record and the fence.
type recordChange struct {
	prereq  []mdns.RR
	updates []mdns.RR
}

// change decides from st, the state read before, what r needs to hold
// site's value under token. A nil change (and no error) means nothing
// to send: the server already holds it.
func change(r Record, want mdns.RR, site string, token uint64, st state) (Outcome, *recordChange, error) {
	name := want.Header().Name
	outcome := OutcomeSwitched
	if st.HasFence {
		if st.Token > token {
			return "", nil, fmt.Errorf("switch %s to token %d: fence holds token %d (site %s): %w", name, token, st.Token, st.Site, ErrLowerToken)
		}
		if st.Token == token && st.Site == site {
			if len(st.records) == 1 && mdns.IsDuplicate(st.records[0], want) && st.records[0].Header().Ttl == want.Header().Ttl {
				return OutcomeUnchanged, nil, nil
			}
			outcome = OutcomeDriftCorrected
		}
	}
	m := new(mdns.Msg)
	m.SetUpdate(".") // the helpers below take the class from the zone section
	fenceName := r.FenceName()
	if st.fence != nil {
		m.Used([]mdns.RR{mdns.Copy(st.fence)})
	} else {
		m.RRsetNotUsed([]mdns.RR{&mdns.TXT{Hdr: mdns.RR_Header{Name: fenceName, Rrtype: mdns.TypeTXT}}})
	}
	qtype := want.Header().Rrtype
	if qtype != mdns.TypeCNAME {
		// A CNAME at the name would shadow the record and make the
		// server ignore the add.
		m.RemoveRRset([]mdns.RR{&mdns.CNAME{Hdr: mdns.RR_Header{Name: name, Rrtype: mdns.TypeCNAME}}})
	}
	m.RemoveRRset([]mdns.RR{&mdns.ANY{Hdr: mdns.RR_Header{Name: name, Rrtype: qtype}}})
	m.Insert([]mdns.RR{mdns.Copy(want)})
	m.RemoveRRset([]mdns.RR{&mdns.TXT{Hdr: mdns.RR_Header{Name: fenceName, Rrtype: mdns.TypeTXT}}})
	m.Insert([]mdns.RR{&mdns.TXT{
		Hdr: mdns.RR_Header{Name: fenceName, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: r.TTL},
		Txt: []string{Fence{Token: token, Site: site}.String()},
	}})
	return outcome, &recordChange{prereq: m.Answer, updates: m.Ns}, nil
}

// exchange sends m over TCP, signed with key when it is not nil. A response
// whose TSIG does not verify is returned with verifyErr set, so that the
// caller can still read its rcode; err is set when there is no response.
func (c *Client) exchange(ctx context.Context, m *mdns.Msg, key *Key, op, name string) (resp *mdns.Msg, verifyErr, err error) {
	if c.Server == "" {
		return nil, nil, fmt.Errorf("%s %s: no server: %w", op, name, ErrInvalid)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	mc := &mdns.Client{Net: "tcp", Timeout: timeout}
	if key != nil {
		keyName, algo, secret, err := key.parse()
		if err != nil {
			return nil, nil, err
		}
		mc.TsigSecret = map[string]string{keyName: secret}
		m.SetTsig(keyName, algo, tsigFudge, time.Now().Unix())
	}
	ectx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, _, err = mc.ExchangeContext(ectx, m, c.Server)
	if err != nil && resp != nil && resp.IsTsig() != nil && isTSIGVerifyError(err) {
		return resp, err, nil
	}
	if err != nil {
		return nil, nil, transportError(ctx, fmt.Sprintf("%s %s at %s", op, name, c.Server), err)
	}
	return resp, nil, nil
}

// transportError classifies an exchange that got no usable response: the
// caller's cancellation stays itself; everything else, the caller's deadline
// included, is ErrUnreachable.
func transportError(ctx context.Context, what string, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("%s: %w", what, context.Cause(ctx))
	}
	return fmt.Errorf("%s: %v: %w", what, err, ErrUnreachable)
}

func isTSIGVerifyError(err error) bool {
	return errors.Is(err, mdns.ErrAuth) || errors.Is(err, mdns.ErrSig) || errors.Is(err, mdns.ErrTime) ||
		errors.Is(err, mdns.ErrSecret) || errors.Is(err, mdns.ErrKeyAlg)
}

// responseError turns a response into an error, nil for NOERROR with a
// valid signature.
func responseError(op, name string, resp *mdns.Msg, verifyErr error) error {
	rcErr := &RcodeError{Op: op, Name: name, Rcode: resp.Rcode}
	if t := resp.IsTsig(); t != nil {
		rcErr.TSIGError = int(t.Error)
	}
	if rcErr.Rcode != mdns.RcodeSuccess || rcErr.TSIGError != 0 {
		return rcErr
	}
	if verifyErr != nil {
		return fmt.Errorf("%s %s: the response's signature does not verify (%v): %w", op, name, verifyErr, ErrTSIG)
	}
	return nil
}

var supportedAlgorithms = []string{mdns.HmacSHA1, mdns.HmacSHA224, mdns.HmacSHA256, mdns.HmacSHA384, mdns.HmacSHA512}

// parse checks the key and returns its canonical name, algorithm and secret.
func (k *Key) parse() (name, algo, secret string, err error) {
	if _, ok := mdns.IsDomainName(k.Name); !ok || k.Name == "" {
		return "", "", "", fmt.Errorf("tsig key name %q is not a domain name: %w", k.Name, ErrTSIG)
	}
	algo = mdns.HmacSHA256
	if k.Algorithm != "" {
		algo = mdns.CanonicalName(k.Algorithm)
	}
	if !slices.Contains(supportedAlgorithms, algo) {
		return "", "", "", fmt.Errorf("tsig key %s: unsupported algorithm %q: %w", k.Name, k.Algorithm, ErrTSIG)
	}
	secret = strings.TrimSpace(k.Secret)
	if raw, err := base64.StdEncoding.DecodeString(secret); err != nil || len(raw) == 0 {
		return "", "", "", fmt.Errorf("tsig key %s: secret is not base64: %w", k.Name, ErrTSIG)
	}
	return mdns.CanonicalName(k.Name), algo, secret, nil
}
