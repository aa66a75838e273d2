package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Webhook defaults.
const (
	DefaultWebhookTimeout = 10 * time.Second
	DefaultRetries        = 3
	DefaultBackoff        = 500 * time.Millisecond
	// maxBackoff bounds one wait between attempts, Retry-After included.
	maxBackoff = time.Minute
	// maxErrorBody bounds the part of an answer's body kept for the error.
	maxErrorBody = 256
)

// Headers of a webhook request.
const (
	HeaderSignature = "X-Witness-Signature"
	HeaderToken     = "X-Witness-Token"
	HeaderDelivery  = "X-Witness-Delivery"
)

// defaultClient does not follow redirects: a POST redirected would become
// a GET without the body, and its 200 would look like a delivery.
var defaultClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Webhook posts notifications as JSON to one URL.
type Webhook struct {
	// URL is the endpoint, http:// or https://.
	URL string
	// Secret keys the HMAC signature; none is sent when empty. The caller
	// reads it from a file.
	Secret []byte
	// Timeout bounds each attempt; DefaultWebhookTimeout when zero.
	Timeout time.Duration
	// Retries is how many times a failed attempt is retried;
	// DefaultRetries when zero, none when negative.
	Retries int
	// Backoff is the wait before the first retry, doubled for each next
	// one; DefaultBackoff when zero.
	Backoff time.Duration
	// Client sends the requests; when nil, a client that does not follow
	// redirects.
	Client *http.Client
}

// Send posts m, retrying as the package documentation says, until it is
// delivered, rejected, the retries are spent or ctx ends.
func (w *Webhook) Send(ctx context.Context, m Message) error {
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook: %w", &reasonError{reason: ErrInvalid, err: errors.New("want an http:// or https:// URL")})
	}
	endpoint := u.Scheme + "://" + u.Host
	body, err := json.Marshal(m.payload())
	if err != nil {
		return fmt.Errorf("webhook %s: encode message: %w", endpoint, err)
	}

	attempts := 1 + w.Retries
	switch {
	case w.Retries == 0:
		attempts = 1 + DefaultRetries
	case w.Retries < 0:
		attempts = 1
	}
	backoff := w.Backoff
	if backoff <= 0 {
		backoff = DefaultBackoff
	}

	var last error
	made := 0
	for attempt := 1; ; attempt++ {
		made = attempt
		retryAfter, err := w.post(ctx, body, &m)
		if err == nil {
			return nil
		}
		last = err
		if errors.Is(err, ErrRejected) || errors.Is(err, ErrInvalid) {
			return fmt.Errorf("webhook %s: %w", endpoint, err)
		}
		if ctx.Err() != nil || attempt == attempts {
			break
		}
		wait := max(backoff, retryAfter)
		backoff = min(2*backoff, maxBackoff)
		if err := sleep(ctx, min(wait, maxBackoff)); err != nil {
			last = fmt.Errorf("%w, then %w", last, err)
			break
		}
	}
	noun := "attempts"
	if made == 1 {
		noun = "attempt"
	}
	detail := fmt.Errorf("after %d %s: %w", made, noun, last)
	reason := ErrDelivery
	if cerr := ctx.Err(); cerr != nil && !errors.Is(last, cerr) {
		detail = &reasonError{reason: cerr, err: detail}
	}
	return fmt.Errorf("webhook %s: %w", endpoint, &reasonError{reason: reason, err: detail})
}

// post makes one attempt. It returns nil on a 2xx answer, an error that
// matches ErrRejected when retrying is pointless, and otherwise the error
// and how long the server asked to wait (zero when it did not).
func (w *Webhook) post(ctx context.Context, body []byte, m *Message) (retryAfter time.Duration, err error) {
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = DefaultWebhookTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(actx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		// Not err itself: it quotes the URL.
		return 0, &reasonError{reason: ErrInvalid, err: errors.New("cannot build a request for the URL")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "witness")
	req.Header.Set(HeaderToken, strconv.FormatUint(m.Token, 10))
	req.Header.Set(HeaderDelivery, m.deliveryID())
	if len(w.Secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(w.Secret, body))
	}

	client := w.Client
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		// The *url.Error would quote the whole URL, secret path included.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		if ctx.Err() == nil && actx.Err() != nil {
			return 0, fmt.Errorf("no answer within %s", timeout)
		}
		return 0, err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	// Drain a little more so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	serr := &StatusError{Code: resp.StatusCode, Body: bodySnippet(snippet)}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return parseRetryAfter(resp.Header.Get("Retry-After")), serr
	}
	return 0, &reasonError{reason: ErrRejected, err: serr}
}

// Sign returns the X-Witness-Signature value for body: "sha256=" and the
// hex HMAC-SHA256 of body keyed with secret. A receiver recomputes it over
// the raw body and compares with hmac.Equal.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func parseRetryAfter(v string) time.Duration {
	secs, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || secs <= 0 {
		return 0
	}
	return min(time.Duration(secs)*time.Second, maxBackoff)
}

func bodySnippet(b []byte) string {
	return strings.TrimSpace(oneLine(strings.ToValidUTF8(string(b), "")))
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
