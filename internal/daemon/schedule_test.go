package daemon

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

func fixed(v float64) func() float64 { return func() float64 { return v } }

func TestNextDelay(t *testing.T) {
	s := Schedule{PollInterval: time.Minute, ShortResync: 15 * time.Second}
	wait := &reconcile.WaitError{Reason: "machines booting", After: 5 * time.Second}
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
		{"work in progress requeues after its own shorter delay", Outcome{Requeue: 7 * time.Second}, 0, 0.5, 7 * time.Second, 0},
		{"a requeue longer than the short re-sync is cut to it", Outcome{Requeue: 40 * time.Second}, 0, 0.5, 15 * time.Second, 0},
		{"a requeue of almost nothing waits the minimum", Outcome{Requeue: time.Millisecond}, 0, 0.5, time.Second, 0},
		{"a wait error requeues after its delay", Outcome{Err: wait}, 0, 0.5, 5 * time.Second, 0},
		{"a wait error without delay uses the short re-sync", Outcome{Err: &reconcile.WaitError{Reason: "x"}}, 0, 0.5, 15 * time.Second, 0},
		{"the first transient error retries after 1s", Outcome{Err: reconcile.Transient(errors.New("throttled"))}, 0, 0.5, time.Second, 1},
		{"the backoff doubles", Outcome{Err: reconcile.Transient(errors.New("throttled"))}, 3, 0.5, 8 * time.Second, 4},
		{"the backoff is jittered", Outcome{Err: reconcile.Transient(errors.New("throttled"))}, 3, 1, 9600 * time.Millisecond, 4},
		{"the backoff stops at the poll interval", Outcome{Err: reconcile.Transient(errors.New("throttled"))}, 30, 1, time.Minute, 31},
		{"the backoff past the poll interval is cut to it", Outcome{Err: reconcile.Transient(errors.New("throttled"))}, 6, 0.5, time.Minute, 7},
		{"the backoff never goes under 1s", Outcome{Err: reconcile.Transient(errors.New("throttled"))}, 0, 0, time.Second, 1},
		{"a stalled error polls at the interval", Outcome{Err: reconcile.Stalled(errors.New("bad spec"))}, 2, 0.5, time.Minute, 0},
		{"an unknown error polls at the interval", Outcome{Err: errors.New("boom")}, 2, 0.5, time.Minute, 0},
		{"a stalled cluster beside one in progress requeues", Outcome{Err: reconcile.Stalled(errors.New("bad spec")), Requeue: 10 * time.Second}, 0, 0.5, 10 * time.Second, 0},
		{"a joined stall and wait stalls but keeps the requeue", Outcome{Err: errors.Join(reconcile.Stalled(errors.New("bad")), wait), Requeue: 5 * time.Second}, 0, 0.5, 5 * time.Second, 0},
		{"a transient error with work in progress retries no later than the requeue", Outcome{Err: reconcile.Transient(errors.New("x")), Requeue: 3 * time.Second}, 8, 0.5, 3 * time.Second, 9},
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
				d, failures = s.NextDelay(Outcome{Err: reconcile.Transient(errors.New("x"))}, failures, fixed(0.5))
				got = append(got, d.String())
			}
			if fmt.Sprint(got) != c.want {
				t.Errorf("backoff %v, want %s", got, c.want)
			}
		})
	}
}

func TestResultNames(t *testing.T) {
	cases := map[string]Outcome{
		ResultSuccess: {},
		ResultRequeue: {Err: &reconcile.WaitError{Reason: "x"}},
		ResultRetry:   {Err: reconcile.Transient(errors.New("x"))},
		ResultStalled: {Err: reconcile.Stalled(errors.New("x"))},
		ResultFailed:  {Err: errors.New("x")},
	}
	for want, o := range cases {
		if got := o.Result(); got != want {
			t.Errorf("Result() = %q, want %q", got, want)
		}
	}
}
