package fleetsync

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// Backoff bounds for failed syncs.
const (
	MinBackoff = time.Second
	MaxBackoff = 5 * time.Minute
)

// decide is the one place that turns a sync's result into what happens
// next (res.Decision). Every part of a joined error is classified on its
// own, so one cluster's stalled spec never stops another cluster's retry:
//   - transient (throttling, 5xx, a dropped connection, a failed push):
//     retry with backoff — the sync's own (Backoff) when the fetch, the
//     load, the connection or the status push failed; a cluster's or a
//     peer's own (RetryAfter) when only it failed, so that it neither
//     hammers its peer nor delays another cluster;
//   - stalled (credentials, permissions, quota, an invalid fleet.yaml, a
//     reference to nothing): no retry until the fleet repo or the
//     configuration changes;
//   - in progress (machines booting, nodes draining): sync again soon
//     (Requeue, which never stands for a failure);
//   - anything else: report, and sync again at the poll interval.
func (l *Loop) decide(res *Result) {
	d := reconcile.Decision{Requeue: res.requeue, RetryAfter: l.retryAfter(l.clock()), Reaction: reactionOf(res.Err)}
	if d.Reaction == reconcile.ReactNone && d.Requeue > 0 {
		d.Reaction = reconcile.ReactRequeue
	}
	if res.Err != nil {
		d.Reason, _, _ = strings.Cut(res.Err.Error(), "\n")
	}
	d.Backoff = d.Reaction == reconcile.ReactRetry && res.syncBackoff
	res.Decision = d
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
			delete(l.mem.backoff, c.Cluster)
			continue
		}
		b := l.failedAgain(&l.mem.backoff, c.Cluster, c.Err)
		l.logger().Warn("Cluster backs off after a transient failure", "cluster", c.Cluster,
			"failures", b.Failures, "until", b.Until.Format(time.RFC3339), "error", b.Reason)
	}
	for name := range l.mem.backoff {
		if _, ok := held[name]; !ok && !ran[name] && !l.mem.backoff[name].Until.After(now) {
			// Nothing left to retry for it (its actions are gone).
			delete(l.mem.backoff, name)
		}
	}
}

// failedAgain counts one more consecutive transient failure of key in m and
// returns its backoff. The wait counts from now, the end of the attempt,
// not the sync's start: a long apply or the SDK's own retries must not eat
// it.
func (l *Loop) failedAgain(m *map[string]reconcile.Backoff, key string, err error) reconcile.Backoff {
	b := (*m)[key]
	b.Failures++
	b.Until = l.clock().Add(backoffDelay(b.Failures))
	b.Reason = err.Error()
	if *m == nil {
		*m = map[string]reconcile.Backoff{}
	}
	(*m)[key] = b
	return b
}

// backoffDelay is the wait after the n-th consecutive transient failure.
func backoffDelay(n int) time.Duration {
	return reconcile.BackoffDelay(n, MinBackoff, MaxBackoff, 0.2, rand.Float64)
}

// retryAfter is how long until the first cluster's or peer's backoff runs
// out (0 when none backs off): the next sync is due then at the latest.
func (l *Loop) retryAfter(now time.Time) time.Duration {
	var first time.Duration
	for _, m := range []map[string]reconcile.Backoff{l.mem.backoff, l.mem.peers} {
		for _, b := range m {
			if d := b.Until.Sub(now); d > 0 && (first == 0 || d < first) {
				first = d
			} else if d <= 0 {
				return MinBackoff
			}
		}
	}
	return first
}

// observe observes the world, except the peers that back off after
// transient failures: those are not called before their backoff runs out,
// and are recorded as not observed, with why, so the clusters there are
// left alone. A peer whose list fails transiently backs off (MinBackoff,
// doubling to MaxBackoff); one that answers starts over.
func (l *Loop) observe(ctx context.Context, res *Result, fleet *schema.Fleet, w reconcile.World) (reconcile.Observed, error) {
	skip := map[string]string{}
	clock := l.clock()
	for peer, b := range l.mem.peers {
		if b.Until.After(clock) {
			skip[peer] = fmt.Sprintf("backing off after %d transient failures: called again at %s; last error: %s",
				b.Failures, b.Until.UTC().Format(time.RFC3339), b.Reason)
		}
	}
	var (
		mu     sync.Mutex
		failed int
	)
	o, err := reconcile.Observe(ctx, fleet, w, reconcile.ObserveOptions{Concurrency: l.Apply.Concurrency, Skip: skip,
		Peer: func(peer string, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err == nil || reconcile.Classify(err) != reconcile.ReactRetry {
				delete(l.mem.peers, peer)
				if err != nil {
					failed++
				}
				return
			}
			failed++
			b := l.failedAgain(&l.mem.peers, peer, err)
			l.logger().Warn("Peer backs off after a transient failure", "peer", peer,
				"failures", b.Failures, "until", b.Until.Format(time.RFC3339), "error", b.Reason)
		}})
	if err != nil && len(leaves(err)) > failed+len(skip) {
		// Something else failed than whole peers (one cluster's machines
		// or nodes): the sync backs off as a whole.
		res.syncBackoff = true
	}
	return o, err
}
