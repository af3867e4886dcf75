package fleetsync

import (
	"errors"
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
