package dns

import (
	"fmt"
	"strconv"
	"strings"
)

// FencePrefix is the label put in front of a managed record's name to make
// the name of its fence TXT record.
const FencePrefix = "_witness."

// maxSiteLen bounds a site name, like a DNS label.
const maxSiteLen = 63

// Fence is the content of a fence TXT record: the token of the transition
// that last wrote the record, and the site it was written for.
type Fence struct {
	Token uint64
	Site  string
}

// String is the canonical text, "token=N site=S", that ParseFence accepts.
func (f Fence) String() string {
	return "token=" + strconv.FormatUint(f.Token, 10) + " site=" + f.Site
}

// ParseFence parses exactly "token=N site=S": N a decimal uint64 without
// sign or leading zeros, S a site name of letters, digits, '-', '_' and '.'.
// Anything else is ErrBadFence: Witness never guesses at a fence it cannot
// read.
func ParseFence(s string) (Fence, error) {
	rest, ok := strings.CutPrefix(s, "token=")
	if !ok {
		return Fence{}, fmt.Errorf("fence %q: want \"token=N site=S\": %w", s, ErrBadFence)
	}
	tok, site, ok := strings.Cut(rest, " site=")
	if !ok {
		return Fence{}, fmt.Errorf("fence %q: want \"token=N site=S\": %w", s, ErrBadFence)
	}
	n, err := strconv.ParseUint(tok, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != tok {
		return Fence{}, fmt.Errorf("fence %q: token %q is not a decimal number: %w", s, tok, ErrBadFence)
	}
	if !validSite(site) {
		return Fence{}, fmt.Errorf("fence %q: bad site name %q: %w", s, site, ErrBadFence)
	}
	return Fence{Token: n, Site: site}, nil
}

func validSite(s string) bool {
	if s == "" || len(s) > maxSiteLen {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
