package daemon

import (
	"cmp"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

// Schedule holds the intervals that decide when the next sync runs. The zero
// value of a field means its default.
type Schedule struct {
	// PollInterval is the time between syncs when nothing is in progress
	// (default 60s). Each wait is jittered by ±PollJitter of it.
	PollInterval time.Duration
	// PollJitter is the fraction of jitter on the poll (default 0.1).
	PollJitter float64
	// ShortResync is the longest wait while work is in progress (default
	// 15s): a sync that asks for a requeue runs again after its own delay
	// when that is shorter, else after ShortResync.
	ShortResync time.Duration
	// MinResync is the shortest wait after any sync (default 1s), so a loop
	// that asks to requeue at once cannot spin.
	MinResync time.Duration
	// BackoffMin and BackoffMax bound the backoff after transient errors
	// (defaults 1s and 5min); it doubles with each consecutive one and is
	// jittered by ±20%. It never exceeds PollInterval: a failing peer is
	// tried again at least as often as a quiet fleet is polled, so that it
	// is noticed soon when it comes back.
	BackoffMin time.Duration
	BackoffMax time.Duration
}

// Defaults of Schedule.
const (
	DefaultPollInterval = 60 * time.Second
	DefaultPollJitter   = 0.1
	DefaultShortResync  = 15 * time.Second
	DefaultMinResync    = time.Second
	DefaultBackoffMin   = time.Second
	DefaultBackoffMax   = 5 * time.Minute
	backoffJitter       = 0.2
)

// WithDefaults returns s with its zero fields set to their defaults.
func (s Schedule) WithDefaults() Schedule {
	if s.PollInterval <= 0 {
		s.PollInterval = DefaultPollInterval
	}
	if s.PollJitter <= 0 {
		s.PollJitter = DefaultPollJitter
	}
	if s.ShortResync <= 0 {
		s.ShortResync = DefaultShortResync
	}
	if s.MinResync <= 0 {
		s.MinResync = DefaultMinResync
	}
	if s.BackoffMin <= 0 {
		s.BackoffMin = DefaultBackoffMin
	}
	if s.BackoffMax <= 0 {
		s.BackoffMax = DefaultBackoffMax
	}
	if s.BackoffMax < s.BackoffMin {
		s.BackoffMax = s.BackoffMin
	}
	return s
}

// NextDelay decides how long to wait after a sync that ended with o, given
// the number of consecutive syncs that failed as a whole before it. It
// returns the delay and the new count. rnd returns a number in [0, 1) for
// the jitter.
//
// The sync loop's decision (o.Decision) decides:
//   - none, stall, fail: the poll interval (the sync loop itself skips
//     re-applying a stalled revision, so polling only notices a new commit
//     sooner than a webhook would);
//   - requeue (work in progress): its own delay, at most ShortResync;
//   - retry of the sync as a whole (Backoff: the fetch, the connection, the
//     status push failed): exponential backoff from BackoffMin to
//     BackoffMax, at most the poll interval; a retry of one cluster or one
//     peer only: that one backs off on its own (RetryAfter).
//
// Whatever the reaction, work in progress elsewhere (Requeue) makes the
// delay at most its requeue delay, and a cluster's or peer's backoff makes
// it at most the time that backoff runs out: one cluster's stalled spec
// never slows down another cluster that is booting, and a throttled one is
// called again when its own backoff says, not sooner.
func (s Schedule) NextDelay(o Outcome, failures int, rnd func() float64) (time.Duration, int) {
	s = s.WithDefaults()
	dec := o.Decision
	d := jitter(s.PollInterval, s.PollJitter, rnd)
	switch {
	case dec.Reaction == reconcile.ReactRetry && dec.Backoff:
		failures++
		d = min(s.backoff(failures, rnd), s.PollInterval)
	case dec.Reaction == reconcile.ReactRequeue:
		failures = 0
		d = s.resync(cmp.Or(dec.Requeue, s.ShortResync))
	default:
		failures = 0
	}
	if dec.Requeue > 0 {
		d = min(d, s.resync(dec.Requeue))
	}
	if dec.RetryAfter > 0 {
		// A cluster's or a peer's own backoff: its next attempt, not sooner.
		d = min(d, max(s.MinResync, dec.RetryAfter))
	}
	return d, failures
}

// resync bounds a requeue delay to [MinResync, ShortResync].
func (s Schedule) resync(d time.Duration) time.Duration {
	return max(s.MinResync, min(d, s.ShortResync))
}

// backoff is the wait before the n-th consecutive retry (n >= 1).
func (s Schedule) backoff(n int, rnd func() float64) time.Duration {
	return reconcile.BackoffDelay(n, s.BackoffMin, s.BackoffMax, backoffJitter, rnd)
}

// jitter returns d moved by up to ±frac of itself.
func jitter(d time.Duration, frac float64, rnd func() float64) time.Duration {
	return time.Duration(float64(d) * (1 + frac*(2*rnd()-1)))
}
