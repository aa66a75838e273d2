package probes

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
)

// maxBody bounds how much of a response body an http probe reads.
const maxBody = 64 << 10

func newHTTPCheck(h HTTPSpec) (func(context.Context) Result, error) {
	tlsConf := &tls.Config{InsecureSkipVerify: h.InsecureSkipVerify} //nolint:gosec // off only when the operator asks
	if h.CAFile != "" {
		pem, err := os.ReadFile(h.CAFile)
		if err != nil {
			return nil, fmt.Errorf("http probe ca file: %w", &ValidationError{Field: "http.ca_file", Value: h.CAFile, Err: err})
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("http probe ca file: %w", &ValidationError{Field: "http.ca_file", Value: h.CAFile, Err: ErrInvalid})
		}
		tlsConf.RootCAs = pool
	}
	client := &http.Client{
		Transport: &http.Transport{
			// A probe measures the path from this witness, not a proxy's,
			// and opens a fresh connection every time.
			Proxy:             nil,
			DialContext:       (&net.Dialer{}).DialContext,
			TLSClientConfig:   tlsConf,
			DisableKeepAlives: true,
			ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	want := []byte(h.BodyContains)
	return func(ctx context.Context) Result {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
		if err != nil {
			return Result{Detail: "request: " + err.Error()}
		}
		req.Header.Set("User-Agent", "witness-probe")
		resp, err := client.Do(req)
		if err != nil {
			return Result{Detail: httpErrorDetail(err)}
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if resp.StatusCode < h.StatusMin || resp.StatusCode > h.StatusMax {
			return Result{Detail: "status " + strconv.Itoa(resp.StatusCode)}
		}
		if len(want) > 0 {
			if err != nil {
				return Result{Detail: "read body: " + err.Error()}
			}
			if !bytes.Contains(body, want) {
				return Result{Detail: fmt.Sprintf("status %d, body lacks %q", resp.StatusCode, h.BodyContains)}
			}
		}
		return Result{OK: true, Detail: "status " + strconv.Itoa(resp.StatusCode)}
	}, nil
}

// httpErrorDetail drops the "Get URL:" prefix that the client adds.
func httpErrorDetail(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}
