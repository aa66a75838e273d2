package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var testMessage = Message{
	Group:  "app",
	From:   "east",
	To:     "west",
	Token:  8,
	Kind:   KindFailover,
	Reason: "east failing for 10s as seen from west and tiebreak",
	At:     time.Date(2026, 3, 1, 13, 0, 0, 250_000_000, time.FixedZone("CET", 3600)),
	Steps: []Step{
		{Name: "fence east", OK: true, Duration: 120 * time.Millisecond},
		{Name: "promote west", OK: false, Error: "node still in recovery after promote", Duration: 2100 * time.Millisecond},
	},
}

// request is what a test endpoint received.
type request struct {
	header http.Header
	body   []byte
}

// endpoint is an httptest server that answers with the statuses given, in
// turn (the last one repeats), and records every request.
type endpoint struct {
	*httptest.Server
	mu       sync.Mutex
	requests []request
}

func newEndpoint(t *testing.T, statuses ...int) *endpoint {
	t.Helper()
	e := &endpoint{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.requests = append(e.requests, request{header: r.Header.Clone(), body: body})
		n := len(e.requests)
		e.mu.Unlock()
		status := statuses[min(n, len(statuses))-1]
		w.WriteHeader(status)
		io.WriteString(w, http.StatusText(status)+" from test endpoint")
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) calls() []request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]request(nil), e.requests...)
}

func TestWebhookBodyAndHeaders(t *testing.T) {
	ep := newEndpoint(t, http.StatusNoContent)
	secret := []byte("s3cret-from-a-file")
	w := &Webhook{URL: ep.URL + "/hooks/witness", Secret: secret}
	if err := w.Send(t.Context(), testMessage); err != nil {
		t.Fatalf("Send: %v", err)
	}
	calls := ep.calls()
	if len(calls) != 1 {
		t.Fatalf("endpoint got %d requests, want 1", len(calls))
	}
	got := calls[0]

	var body map[string]any
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, got.body)
	}
	wantBody := map[string]any{
		"group":  "app",
		"from":   "east",
		"to":     "west",
		"token":  float64(8),
		"kind":   "failover",
		"reason": "east failing for 10s as seen from west and tiebreak",
		"at":     "2026-03-01T12:00:00.250Z",
		"steps": []any{
			map[string]any{"name": "fence east", "ok": true, "duration_ms": float64(120)},
			map[string]any{"name": "promote west", "ok": false, "error": "node still in recovery after promote", "duration_ms": float64(2100)},
		},
	}
	if diff := cmp.Diff(wantBody, body); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}

	// The receiver's check: recompute the HMAC over the raw body.
	sig, ok := strings.CutPrefix(got.header.Get("X-Witness-Signature"), "sha256=")
	if !ok {
		t.Fatalf("X-Witness-Signature = %q, want sha256=<hex>", got.header.Get("X-Witness-Signature"))
	}
	if want := recomputeHMAC(secret, got.body); !hmac.Equal([]byte(want), []byte(sig)) {
		t.Errorf("signature %s, recomputed %s", sig, want)
	}
	if recomputeHMAC([]byte("another secret"), got.body) == sig {
		t.Errorf("signature does not depend on the secret")
	}

	wantHeaders := map[string]string{
		"Content-Type":       "application/json",
		"X-Witness-Token":    "8",
		"X-Witness-Delivery": "app-8-failover",
	}
	gotHeaders := map[string]string{}
	for k := range wantHeaders {
		gotHeaders[k] = got.header.Get(k)
	}
	if diff := cmp.Diff(wantHeaders, gotHeaders); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

func TestWebhookNoSecretNoSignature(t *testing.T) {
	ep := newEndpoint(t, http.StatusOK)
	m := testMessage
	m.Steps = nil
	if err := (&Webhook{URL: ep.URL}).Send(t.Context(), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := ep.calls()[0]
	if v, ok := got.header["X-Witness-Signature"]; ok {
		t.Errorf("X-Witness-Signature = %q without a secret, want none", v)
	}
	var body struct {
		Steps json.RawMessage `json:"steps"`
	}
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatal(err)
	}
	if string(body.Steps) != "[]" {
		t.Errorf("steps = %s without steps, want []", body.Steps)
	}
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int
		retries   int
		wantCalls int
		wantErr   []error // each must match; nil for success
		wantCode  int     // of the *StatusError, when an error
	}{
		{name: "500 then success", statuses: []int{500, 500, 200}, wantCalls: 3},
		{name: "429 then success", statuses: []int{429, 202}, wantCalls: 2},
		{name: "503 always, default retries", statuses: []int{503}, wantCalls: 4, wantErr: []error{ErrDelivery}, wantCode: 503},
		{name: "502 always, one retry", statuses: []int{502}, retries: 1, wantCalls: 2, wantErr: []error{ErrDelivery}, wantCode: 502},
		{name: "500, no retries", statuses: []int{500, 200}, retries: -1, wantCalls: 1, wantErr: []error{ErrDelivery}, wantCode: 500},
		{name: "400 is not retried", statuses: []int{400, 200}, wantCalls: 1, wantErr: []error{ErrRejected}, wantCode: 400},
		{name: "404 is not retried", statuses: []int{404, 200}, wantCalls: 1, wantErr: []error{ErrRejected}, wantCode: 404},
		{name: "500 then 401 stops", statuses: []int{500, 401, 200}, wantCalls: 2, wantErr: []error{ErrRejected}, wantCode: 401},
		{name: "a redirect is not followed", statuses: []int{302, 200}, wantCalls: 1, wantErr: []error{ErrRejected}, wantCode: 302},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := newEndpoint(t, tt.statuses...)
			w := &Webhook{URL: ep.URL, Retries: tt.retries, Backoff: time.Millisecond}
			err := w.Send(t.Context(), testMessage)
			calls := ep.calls()
			if len(calls) != tt.wantCalls {
				t.Errorf("endpoint got %d requests, want %d", len(calls), tt.wantCalls)
			}
			// Every attempt is the same delivery, byte for byte.
			for i, c := range calls {
				if c.header.Get("X-Witness-Delivery") != "app-8-failover" || string(c.body) != string(calls[0].body) {
					t.Errorf("attempt %d differs from the first: %q %s", i+1, c.header.Get("X-Witness-Delivery"), c.body)
				}
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				return
			}
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("Send error = %v, want %v", err, want)
				}
			}
			if errors.Is(err, ErrDelivery) && errors.Is(err, ErrRejected) {
				t.Errorf("Send error = %v matches both ErrDelivery and ErrRejected", err)
			}
			var serr *StatusError
			if !errors.As(err, &serr) {
				t.Fatalf("Send error = %v, want a *StatusError naming the last status", err)
			}
			if serr.Code != tt.wantCode {
				t.Errorf("StatusError.Code = %d, want %d", serr.Code, tt.wantCode)
			}
		})
	}
}

func TestWebhookBackoffDoubles(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	const backoff = 50 * time.Millisecond
	err := (&Webhook{URL: srv.URL, Retries: 3, Backoff: backoff}).Send(t.Context(), testMessage)
	if !errors.Is(err, ErrDelivery) {
		t.Fatalf("Send error = %v, want ErrDelivery", err)
	}
	if len(times) != 4 {
		t.Fatalf("%d attempts, want 4", len(times))
	}
	// Gaps of at least 50, 100 and 200 ms.
	for i := 1; i < len(times); i++ {
		gap := times[i].Sub(times[i-1])
		if want := backoff << (i - 1); gap < want {
			t.Errorf("gap before attempt %d = %v, want at least %v", i+1, gap, want)
		}
	}
}

func TestWebhookRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		n := len(times)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	if err := (&Webhook{URL: srv.URL, Backoff: time.Millisecond}).Send(t.Context(), testMessage); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Errorf("retried after %v, want the second the server asked for", gap)
	}
}

func TestWebhookContextCancel(t *testing.T) {
	t.Run("during the backoff", func(t *testing.T) {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.WriteHeader(http.StatusInternalServerError)
		}))
		t.Cleanup(srv.Close)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		// Cancel once the first answer has reached the client, so that
		// Send is in its backoff.
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := http.DefaultTransport.RoundTrip(r)
			cancel()
			return resp, err
		})}
		start := time.Now()
		err := (&Webhook{URL: srv.URL, Backoff: time.Hour, Client: client}).Send(ctx, testMessage)
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrDelivery) {
			t.Fatalf("Send error = %v, want context.Canceled and ErrDelivery", err)
		}
		var serr *StatusError
		if !errors.As(err, &serr) || serr.Code != 500 {
			t.Errorf("Send error = %v, want it to name the last status 500", err)
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("endpoint got %d requests, want 1", n)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Send returned %v after cancel, want at once", d)
		}
	})
	t.Run("during a request", func(t *testing.T) {
		arrived := make(chan struct{})
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(arrived)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(release) })
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() {
			<-arrived
			cancel()
		}()
		err := (&Webhook{URL: srv.URL, Timeout: time.Hour}).Send(ctx, testMessage)
		if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrDelivery) {
			t.Fatalf("Send error = %v, want context.Canceled and ErrDelivery", err)
		}
	})
}

func TestWebhookTimeout(t *testing.T) {
	// The endpoint never answers; each attempt gives up at Timeout and is
	// retried.
	release := make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	const timeout = 100 * time.Millisecond
	start := time.Now()
	err := (&Webhook{URL: srv.URL, Timeout: timeout, Retries: 2, Backoff: time.Millisecond}).Send(t.Context(), testMessage)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrDelivery) {
		t.Fatalf("Send error = %v, want ErrDelivery", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send error = %v matches DeadlineExceeded though the caller's ctx is live", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("endpoint got %d requests, want 3", n)
	}
	if elapsed < 3*timeout || elapsed > 3*timeout+5*time.Second {
		t.Errorf("Send took %v, want about 3 × %v", elapsed, timeout)
	}
}

func TestWebhookUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/services/T000/B000/secret-path-token"
	srv.Close() // nothing listens there now
	err := (&Webhook{URL: url, Retries: 1, Backoff: time.Millisecond}).Send(t.Context(), testMessage)
	if !errors.Is(err, ErrDelivery) {
		t.Fatalf("Send error = %v, want ErrDelivery", err)
	}
	// Webhook URLs carry secrets in their path; errors end up in logs.
	if strings.Contains(err.Error(), "secret-path-token") {
		t.Errorf("Send error quotes the URL's path: %v", err)
	}
}

func TestWebhookInvalid(t *testing.T) {
	for _, u := range []string{"", "ftp://example.test/x", "http://", "::"} {
		t.Run(u, func(t *testing.T) {
			err := (&Webhook{URL: u}).Send(t.Context(), testMessage)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Send error = %v, want ErrInvalid", err)
			}
		})
	}
}

// recomputeHMAC is the receiver's computation, written out without Sign.
func recomputeHMAC(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
