package notify

import (
	"errors"
	"fmt"
	"net/http"
)

// Errors of notifications, for errors.Is.
var (
	// ErrDelivery means the notification was not delivered: the endpoint
	// or mail server could not be reached, did not answer in time, or
	// answered with a temporary failure on every attempt.
	ErrDelivery = errors.New("notification not delivered")

	// ErrRejected means the receiver refused the notification for good: a
	// webhook answer 4xx other than 429 (or a redirect), an SMTP reply 5xx
	// (unknown recipient, authentication failed). Retrying will not help.
	ErrRejected = errors.New("notification rejected")

	// ErrNoTLS means the mail server does not offer STARTTLS and TLS is
	// required, or credentials would have been sent in plaintext.
	ErrNoTLS = errors.New("mail server offers no TLS")

	// ErrInvalid means the sender is not configured well enough to send:
	// no URL, no sender or recipient, an address that does not parse.
	ErrInvalid = errors.New("invalid notification settings")
)

// StatusError is a webhook answer that was not a success. It is wrapped
// in the error of Webhook.Send with ErrRejected or ErrDelivery.
type StatusError struct {
	Code int
	// Body is the start of the answer's body, for the log.
	Body string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("status %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// reasonError puts a sentinel (or a context error) in front of the error
// that explains it; both match with errors.Is.
type reasonError struct {
	reason error
	err    error
}

func (e *reasonError) Error() string   { return e.reason.Error() + ": " + e.err.Error() }
func (e *reasonError) Unwrap() []error { return []error{e.reason, e.err} }
