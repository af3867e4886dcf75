package vsphere

import (
	"context"
	"net/http"
	"sync/atomic"
)

// HTTPStatusError is an answer of vCenter, or of a proxy in front of it,
// with an HTTP status other than 200 or the 500 that carries a SOAP fault.
// govmomi reports such an answer as an error whose only trace of the status
// is its message; fleetd's transport records the code (statusTransport) so
// that the error is classified by the code, never by the message.
type HTTPStatusError struct {
	Code int
	Err  error
}

func (e *HTTPStatusError) Error() string { return e.Err.Error() }
func (e *HTTPStatusError) Unwrap() error { return e.Err }

// transientStatus reports whether an HTTP status goes away by itself: a
// request timeout, throttling, an overloaded or unreachable vCenter behind a
// proxy.
func transientStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// statusCell carries the status of the last HTTP response of one SOAP round
// trip from the HTTP transport up to the round trip, through the request's
// context.
type statusCell struct{ code atomic.Int32 }

type statusKey struct{}

// withStatusCell returns ctx carrying a new cell for the responses of the
// calls made with it.
func withStatusCell(ctx context.Context) (context.Context, *statusCell) {
	c := &statusCell{}
	return context.WithValue(ctx, statusKey{}, c), c
}

// typed returns err as an *HTTPStatusError when the round trip that failed
// with it got an HTTP status other than 200 or 500.
func (c *statusCell) typed(err error) error {
	if err == nil {
		return nil
	}
	switch code := int(c.code.Load()); code {
	case 0, http.StatusOK, http.StatusInternalServerError:
		return err
	default:
		return &HTTPStatusError{Code: code, Err: err}
	}
}

// statusTransport records each response's status in the request context's
// statusCell. It never interprets the response: the SOAP client does.
type statusTransport struct{ inner http.RoundTripper }

func (t statusTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.inner.RoundTrip(req)
	if err == nil {
		if c, ok := req.Context().Value(statusKey{}).(*statusCell); ok {
			c.code.Store(int32(res.StatusCode))
		}
	}
	return res, err
}
