package reconcile

import (
	"errors"
	"time"
)

// The kind of an error decides how a sync reacts to it (STYLE.md 7). Errors
// are classified in one place, Classify, with errors.As.

// TransientError is a failure that may go away by itself (throttling, a 5xx, a
// dropped connection): the work is retried with backoff.
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// Transient marks err as transient. It returns nil for a nil err.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Err: err}
}

// StalledError is a failure that only a new commit can fix (a bad spec, a
// reference to something that does not exist): the cluster waits for one.
type StalledError struct{ Err error }

func (e *StalledError) Error() string { return e.Err.Error() }
func (e *StalledError) Unwrap() error { return e.Err }

// Stalled marks err as needing a change of the fleet repo. It returns nil for a nil err.
func Stalled(err error) error {
	if err == nil {
		return nil
	}
	return &StalledError{Err: err}
}

// WaitError says the work is in progress elsewhere (a machine booting, a node
// draining): the sync asks to run again after After.
type WaitError struct {
	Reason string
	After  time.Duration
}

func (e *WaitError) Error() string { return "waiting: " + e.Reason }

// UnavailableError says Rancher reports a downstream cluster unavailable
// (Status reason ClusterUnavailable): no agent of the cluster is connected to
// Rancher. Whether that is a fault depends on what the provisioning Cluster
// says (RancherCluster.Provisioned): before the first machine registered it is
// how every new cluster answers; after, its agent is disconnected. It carries
// no reaction of its own: the error it is wrapped in (or wraps) decides.
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string { return e.Err.Error() }
func (e *UnavailableError) Unwrap() error { return e.Err }

// Reaction is what a sync does about an error.
type Reaction int

// Reactions, from the least to the most severe.
const (
	ReactNone    Reaction = iota // no error
	ReactRequeue                 // check again soon; nothing failed
	ReactRetry                   // retry with backoff
	ReactStall                   // wait for a new commit
	ReactFail                    // unknown failure: report it and retry at the poll interval
)

// Classify returns the reaction to err.
func Classify(err error) Reaction {
	var (
		wait    *WaitError
		trans   *TransientError
		stalled *StalledError
		hung    *HungError
	)
	switch {
	case err == nil:
		return ReactNone
	case errors.As(err, &hung):
		// A peer that did not answer may answer next time, whatever the
		// layers below made of the cancelled call.
		return ReactRetry
	case errors.As(err, &stalled):
		return ReactStall
	case errors.As(err, &trans):
		return ReactRetry
	case errors.As(err, &wait):
		return ReactRequeue
	default:
		return ReactFail
	}
}

// BackoffDelay is the wait before the n-th consecutive retry (n >= 1): lo
// doubled n-1 times up to hi, moved by up to ±frac of itself (rnd returns a
// number in [0, 1)), and kept within [lo, hi]. The daemon's backoff after a
// failed sync and a cluster's own backoff in the loop are both this.
func BackoffDelay(n int, lo, hi time.Duration, frac float64, rnd func() float64) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	d = time.Duration(float64(d) * (1 + frac*(2*rnd()-1)))
	return max(lo, min(d, hi))
}
