package daemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

func fixed(v float64) func() float64 { return func() float64 { return v } }

func TestNextDelay(t *testing.T) {
	s := Schedule{PollInterval: time.Minute, ShortResync: 15 * time.Second}
	dec := func(r reconcile.Reaction, requeue, retryAfter time.Duration, backoff bool) Outcome {
		return Outcome{Decision: reconcile.Decision{Reaction: r, Requeue: requeue, RetryAfter: retryAfter, Backoff: backoff}}
	}
	retry := dec(reconcile.ReactRetry, 0, 0, true)
	cases := []struct {
		name         string
		o            Outcome
		failures     int
		rnd          float64
		want         time.Duration
		wantFailures int
	}{
		{"success polls at the interval", Outcome{}, 0, 0.5, time.Minute, 0},
		{"the poll is jittered down by up to 10%", Outcome{}, 0, 0, 54 * time.Second, 0},
		{"the poll is jittered up by up to 10%", Outcome{}, 0, 1, 66 * time.Second, 0},
		{"success resets the failures", Outcome{}, 4, 0.5, time.Minute, 0},
		{"work in progress requeues after its own shorter delay", dec(reconcile.ReactRequeue, 7*time.Second, 0, false), 0, 0.5, 7 * time.Second, 0},
		{"a requeue longer than the short re-sync is cut to it", dec(reconcile.ReactRequeue, 40*time.Second, 0, false), 0, 0.5, 15 * time.Second, 0},
		{"a requeue of almost nothing waits the minimum", dec(reconcile.ReactRequeue, time.Millisecond, 0, false), 0, 0.5, time.Second, 0},
		{"a requeue without delay uses the short re-sync", dec(reconcile.ReactRequeue, 0, 0, false), 0, 0.5, 15 * time.Second, 0},
		{"the first failed sync retries after 1s", retry, 0, 0.5, time.Second, 1},
		{"the backoff doubles", retry, 3, 0.5, 8 * time.Second, 4},
		{"the backoff is jittered", retry, 3, 1, 9600 * time.Millisecond, 4},
		{"the backoff stops at the poll interval", retry, 30, 1, time.Minute, 31},
		{"the backoff past the poll interval is cut to it", retry, 6, 0.5, time.Minute, 7},
		{"the backoff never goes under 1s", retry, 0, 0, time.Second, 1},
		{"a cluster's own retry waits for its backoff, not the sync's", dec(reconcile.ReactRetry, 0, 8*time.Second, false), 3, 0.5, 8 * time.Second, 0},
		{"a cluster's own retry without a backoff polls", dec(reconcile.ReactRetry, 0, 0, false), 3, 0.5, time.Minute, 0},
		{"a stalled error polls at the interval", dec(reconcile.ReactStall, 0, 0, false), 2, 0.5, time.Minute, 0},
		{"an unknown error polls at the interval", dec(reconcile.ReactFail, 0, 0, false), 2, 0.5, time.Minute, 0},
		{"a stalled cluster beside one in progress requeues", dec(reconcile.ReactStall, 10*time.Second, 0, false), 0, 0.5, 10 * time.Second, 0},
		{"a failed sync with work in progress retries no later than the requeue", dec(reconcile.ReactRetry, 3*time.Second, 0, true), 8, 0.5, 3 * time.Second, 9},
		{"a backoff that ran out retries after the minimum", dec(reconcile.ReactNone, 0, time.Millisecond, false), 0, 0.5, time.Second, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, f := s.NextDelay(c.o, c.failures, fixed(c.rnd))
			if got != c.want || f != c.wantFailures {
				t.Errorf("NextDelay = %v, %d failures; want %v, %d", got, f, c.want, c.wantFailures)
			}
		})
	}
}

func TestBackoffSequence(t *testing.T) {
	cases := []struct {
		name string
		poll time.Duration
		want string
	}{
		// Without the cap, a failing fetch was retried after 2m8s, then
		// 4m16s, then every 5 minutes: a remote back up after 3 minutes
		// was noticed only minutes later.
		{"capped at the default poll interval", 0, "[1s 2s 4s 8s 16s 32s 1m0s 1m0s 1m0s 1m0s 1m0s 1m0s]"},
		{"capped at BackoffMax under a longer poll", 10 * time.Minute, "[1s 2s 4s 8s 16s 32s 1m4s 2m8s 4m16s 5m0s 5m0s 5m0s]"},
		{"capped at a short poll", 5 * time.Second, "[1s 2s 4s 5s 5s 5s 5s 5s 5s 5s 5s 5s]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Schedule{PollInterval: c.poll}.WithDefaults()
			var got []string
			failures := 0
			for range 12 {
				var d time.Duration
				d, failures = s.NextDelay(Outcome{Decision: reconcile.Decision{Reaction: reconcile.ReactRetry, Backoff: true}}, failures, fixed(0.5))
				got = append(got, d.String())
			}
			if fmt.Sprint(got) != c.want {
				t.Errorf("backoff %v, want %s", got, c.want)
			}
		})
	}
}

func TestResultNames(t *testing.T) {
	cases := map[string]reconcile.Reaction{
		reconcile.ResultSuccess: reconcile.ReactNone,
		reconcile.ResultRequeue: reconcile.ReactRequeue,
		reconcile.ResultRetry:   reconcile.ReactRetry,
		reconcile.ResultStalled: reconcile.ReactStall,
		reconcile.ResultFailed:  reconcile.ReactFail,
	}
	for want, r := range cases {
		if got := (Outcome{Decision: reconcile.Decision{Reaction: r}}).Result(); got != want {
			t.Errorf("Result() = %q, want %q", got, want)
		}
	}
}
