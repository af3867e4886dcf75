package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// HungError says a call to a peer (a provider, Rancher, a downstream
// cluster) got no answer within its deadline. It is transient: the peer may
// answer at the next sync. Its message names the call, so a sync that ends on
// a hung peer says which one.
type HungError struct {
	// Call names the call and its peer: "provider dc1: list machines".
	Call string
	// After is the call's deadline.
	After time.Duration
	// Err is what the call returned when its context ended.
	Err error
}

func (e *HungError) Error() string {
	return fmt.Sprintf("%s: no answer within %s", e.Call, e.After)
}

func (e *HungError) Unwrap() error { return e.Err }

// BoundCall runs call with a context that ends after d, and turns the failure
// of a call whose deadline passed into a transient *HungError naming it. When
// an enclosing deadline (the sync's) ended the call first, the error names the
// call and that deadline's cause. A call that ends by itself keeps its own
// error; so does one cancelled on purpose (a stop).
func BoundCall[T any](ctx context.Context, d time.Duration, name string, call func(context.Context) (T, error)) (T, error) {
	if d <= 0 {
		return call(ctx)
	}
	hung := &HungError{Call: name, After: d}
	cctx, cancel := context.WithTimeoutCause(ctx, d, hung)
	defer cancel()
	v, err := call(cctx)
	return v, hungOrErr(cctx, name, err, hung)
}

func hungOrErr(ctx context.Context, name string, err error, hung *HungError) error {
	if err == nil || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return err
	}
	if cause := context.Cause(ctx); cause != hung {
		// The enclosing deadline passed first: say which call it caught.
		return Transient(fmt.Errorf("%s: %w", name, cause))
	}
	// A new value: the cause is shared with whatever the call left running,
	// and err may already wrap it (net/http returns a context's cause).
	return Transient(&HungError{Call: name, After: hung.After, Err: err})
}
