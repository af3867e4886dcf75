package fleetsync

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

// Backoff bounds for failed syncs.
const (
	MinBackoff = time.Second
	MaxBackoff = 5 * time.Minute
)

// decide is the one place that turns a sync's failures into what happens
// next. Every part of a joined error is classified on its own, so one
// cluster's stalled spec never stops another cluster's retry:
//   - transient (throttling, 5xx, a dropped connection, a failed push):
//     retry with backoff;
//   - stalled (credentials, permissions, quota, an invalid fleet.yaml, a
//     reference to nothing): no retry until the fleet repo or the
//     configuration changes;
//   - in progress (machines booting, nodes draining): sync again soon;
//   - anything else: report, and sync again at the poll interval.
func (l *Loop) decide(res *Result) {
	res.Requeue = res.Sync.Requeue
	res.RetryAfter = l.retryAfter(l.now())
	res.Reaction = reactionOf(res.Err)
	if res.Reaction == reconcile.ReactNone && res.Requeue > 0 {
		res.Reaction = reconcile.ReactRequeue
	}
}

// reactionOf classifies a joined error by its parts: retry wins over fail,
// fail over stall.
func reactionOf(err error) reconcile.Reaction {
	if err == nil {
		return reconcile.ReactNone
	}
	parts := leaves(err)
	seen := map[reconcile.Reaction]bool{}
	for _, p := range parts {
		seen[reconcile.Classify(p)] = true
	}
	for _, r := range []reconcile.Reaction{reconcile.ReactRetry, reconcile.ReactFail, reconcile.ReactStall, reconcile.ReactRequeue} {
		if seen[r] {
			return r
		}
	}
	return reconcile.ReactFail
}

// leaves splits joined errors into their parts, keeping each part whole
// (with the kind markers it wraps).
func leaves(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok && !isKinded(e) {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if w := errors.Unwrap(e); w != nil && !isKinded(e) {
			// A wrapper around a join: look inside it.
			if _, ok := w.(interface{ Unwrap() []error }); ok {
				walk(w)
				return
			}
		}
		out = append(out, e)
	}
	walk(err)
	return out
}

func isKinded(e error) bool {
	switch e.(type) {
	case *reconcile.StalledError, *reconcile.TransientError, *reconcile.WaitError:
		return true
	}
	return false
}

// noteFailures keeps each cluster's backoff across syncs: a cluster whose
// actions failed transiently waits MinBackoff, doubling with each
// consecutive failure up to MaxBackoff (jittered by ±20%), before its
// actions run again; one that ran without failing starts over. Clusters
// held back this sync (held) keep their backoff as it is.
func (l *Loop) noteFailures(a *reconcile.ApplyResult, held map[string]reconcile.Backoff, now time.Time) {
	ran := map[string]bool{}
	for _, c := range a.Clusters {
		ran[c.Cluster] = true
		if c.Reaction != reconcile.ReactRetry {
			delete(l.backoff, c.Cluster)
			continue
		}
		b := l.backoff[c.Cluster]
		b.Failures++
		b.Until = now.Add(backoffDelay(b.Failures))
		b.Reason = c.Err.Error()
		if l.backoff == nil {
			l.backoff = map[string]reconcile.Backoff{}
		}
		l.backoff[c.Cluster] = b
		l.logger().Warn("Cluster backs off after a transient failure", "cluster", c.Cluster,
			"failures", b.Failures, "until", b.Until.Format(time.RFC3339), "error", b.Reason)
	}
	for name := range l.backoff {
		if _, ok := held[name]; !ok && !ran[name] && !l.backoff[name].Until.After(now) {
			// Nothing left to retry for it (its actions are gone).
			delete(l.backoff, name)
		}
	}
}

// backoffDelay is the wait after the n-th consecutive transient failure.
func backoffDelay(n int) time.Duration {
	return reconcile.BackoffDelay(n, MinBackoff, MaxBackoff, 0.2, rand.Float64)
}

// retryAfter is how long until the first cluster's backoff runs out (0
// when none backs off): the next sync is due then at the latest.
func (l *Loop) retryAfter(now time.Time) time.Duration {
	var first time.Duration
	for _, b := range l.backoff {
		if d := b.Until.Sub(now); d > 0 && (first == 0 || d < first) {
			first = d
		} else if d <= 0 {
			return MinBackoff
		}
	}
	return first
}
