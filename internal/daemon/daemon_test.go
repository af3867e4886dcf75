package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

// gateSyncer blocks each sync until the test releases it, and records how
// many syncs ran and whether two ever overlapped.
type gateSyncer struct {
	started  chan struct{} // one send per sync start
	release  chan Outcome  // the outcome of the blocked sync
	inFlight atomic.Int32
	overlap  atomic.Bool
	calls    atomic.Int32
	ctxErr   atomic.Value // the ctx error seen when a sync returned
}

func newGate() *gateSyncer {
	return &gateSyncer{started: make(chan struct{}, 100), release: make(chan Outcome)}
}

func (g *gateSyncer) Sync(ctx context.Context) Outcome {
	if g.inFlight.Add(1) > 1 {
		g.overlap.Store(true)
	}
	defer g.inFlight.Add(-1)
	g.calls.Add(1)
	g.started <- struct{}{}
	select {
	case o := <-g.release:
		return o
	case <-ctx.Done():
		g.ctxErr.Store(ctx.Err())
		return Outcome{Err: ctx.Err()}
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitStarted(t *testing.T, g *gateSyncer) {
	t.Helper()
	select {
	case <-g.started:
	case <-time.After(5 * time.Second):
		t.Fatal("no sync started")
	}
}

func noStart(t *testing.T, g *gateSyncer, within time.Duration) {
	t.Helper()
	select {
	case <-g.started:
		t.Fatal("an unexpected sync started")
	case <-time.After(within):
	}
}

type runResult struct{ err error }

func startRun(ctx context.Context, d *Daemon, stop <-chan struct{}) <-chan runResult {
	ch := make(chan runResult, 1)
	go func() { ch <- runResult{d.Run(ctx, stop)} }()
	return ch
}

func TestFirstSyncRunsAtOnceAndBurstsCoalesce(t *testing.T) {
	g := newGate()
	d := New(g, Options{Schedule: Schedule{PollInterval: time.Hour}, Logger: quietLogger()})
	stop := make(chan struct{})
	done := startRun(context.Background(), d, stop)
	waitStarted(t, g) // the start sync

	// A burst of 200 triggers while a sync runs queues exactly one more.
	var queued int
	for range 200 {
		q, err := d.Trigger(ReasonWebhook)
		if err != nil {
			t.Fatal(err)
		}
		if q {
			queued++
		}
	}
	if queued != 1 {
		t.Errorf("%d triggers queued a sync, want 1", queued)
	}
	g.release <- Outcome{Revision: "a"}
	waitStarted(t, g) // the queued one
	g.release <- Outcome{Revision: "b"}
	noStart(t, g, 200*time.Millisecond)
	if n := g.calls.Load(); n != 2 {
		t.Errorf("%d syncs ran, want 2", n)
	}
	if g.overlap.Load() {
		t.Error("two syncs ran at once")
	}
	if s := d.Status(); s.Revision != "b" || s.Syncs != 2 || s.Running {
		t.Errorf("status %+v", s)
	}
	close(stop)
	if r := <-done; r.err != nil {
		t.Fatal(r.err)
	}
}

func TestTriggerWhileIdleRunsAtOnce(t *testing.T) {
	g := newGate()
	d := New(g, Options{Schedule: Schedule{PollInterval: time.Hour}, Logger: quietLogger()})
	stop := make(chan struct{})
	defer close(stop)
	startRun(context.Background(), d, stop)
	waitStarted(t, g)
	g.release <- Outcome{}
	noStart(t, g, 100*time.Millisecond)
	if _, err := d.Trigger(ReasonExplicit); err != nil {
		t.Fatal(err)
	}
	waitStarted(t, g)
	g.release <- Outcome{}
}

func TestRequeueAndRetryScheduleTheNextSync(t *testing.T) {
	cases := []struct {
		name string
		o    Outcome
	}{
		{"work in progress", Outcome{Decision: reconcile.Decision{Reaction: reconcile.ReactRequeue, Requeue: 50 * time.Millisecond}}},
		{"transient error", Outcome{Err: errors.New("throttled"), Decision: reconcile.Decision{Reaction: reconcile.ReactRetry, Backoff: true}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGate()
			d := New(g, Options{
				Schedule: Schedule{PollInterval: time.Hour, MinResync: 10 * time.Millisecond, BackoffMin: 50 * time.Millisecond},
				Logger:   quietLogger(),
			})
			stop := make(chan struct{})
			defer close(stop)
			startRun(context.Background(), d, stop)
			waitStarted(t, g)
			t0 := time.Now()
			g.release <- c.o
			waitStarted(t, g)
			if el := time.Since(t0); el < 30*time.Millisecond || el > 2*time.Second {
				t.Errorf("next sync after %v, want about 50ms", el)
			}
			g.release <- Outcome{}
		})
	}
}

func TestPollRunsAtTheInterval(t *testing.T) {
	g := newGate()
	d := New(g, Options{Schedule: Schedule{PollInterval: 100 * time.Millisecond}, Logger: quietLogger()})
	stop := make(chan struct{})
	defer close(stop)
	startRun(context.Background(), d, stop)
	waitStarted(t, g)
	t0 := time.Now()
	g.release <- Outcome{}
	waitStarted(t, g)
	if el := time.Since(t0); el < 85*time.Millisecond {
		t.Errorf("poll after %v, want 90..110ms", el)
	}
	g.release <- Outcome{}
}

func TestGracefulStopLetsTheSyncFinish(t *testing.T) {
	g := newGate()
	d := New(g, Options{Schedule: Schedule{PollInterval: time.Hour}, StopTimeout: 5 * time.Second, Logger: quietLogger()})
	stop := make(chan struct{})
	done := startRun(context.Background(), d, stop)
	waitStarted(t, g)
	if q, _ := d.Trigger(ReasonWebhook); !q {
		t.Fatal("trigger not queued")
	}
	close(stop)
	// Run has not returned: the sync is in flight.
	select {
	case <-done:
		t.Fatal("Run returned before the in-flight sync finished")
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := d.Trigger(ReasonWebhook); !errors.Is(err, ErrStopping) {
		t.Errorf("Trigger while stopping: %v, want ErrStopping", err)
	}
	g.release <- Outcome{Revision: "done"}
	if r := <-done; r.err != nil {
		t.Fatal(r.err)
	}
	if g.ctxErr.Load() != nil {
		t.Error("the sync was cancelled on a graceful stop")
	}
	if n := g.calls.Load(); n != 1 {
		t.Errorf("%d syncs, want 1: the queued one must not run after stop", n)
	}
	if s := d.Status(); s.Revision != "done" {
		t.Errorf("the finished sync was not recorded: %+v", s)
	}
}

func TestGracefulStopCancelsAfterTheTimeout(t *testing.T) {
	g := newGate()
	d := New(g, Options{Schedule: Schedule{PollInterval: time.Hour}, StopTimeout: 100 * time.Millisecond, Logger: quietLogger()})
	stop := make(chan struct{})
	done := startRun(context.Background(), d, stop)
	waitStarted(t, g)
	t0 := time.Now()
	close(stop)
	if r := <-done; r.err != nil {
		t.Fatal(r.err)
	}
	if el := time.Since(t0); el < 100*time.Millisecond || el > 3*time.Second {
		t.Errorf("stopped after %v, want the 100ms timeout", el)
	}
	if err, _ := g.ctxErr.Load().(error); !errors.Is(err, context.Canceled) {
		t.Errorf("sync ctx error %v, want canceled", err)
	}
}

func TestGracefulStopGivesUpOnASyncThatIgnoresCancel(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	d := New(SyncerFunc(func(context.Context) Outcome { <-block; return Outcome{} }),
		Options{StopTimeout: 50 * time.Millisecond, CancelGrace: 50 * time.Millisecond, Logger: quietLogger()})
	stop := make(chan struct{})
	done := startRun(context.Background(), d, stop)
	time.Sleep(50 * time.Millisecond)
	close(stop)
	select {
	case r := <-done:
		if !errors.Is(r.err, ErrStopTimeout) {
			t.Errorf("Run = %v, want ErrStopTimeout", r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run hung on a sync that ignores cancel")
	}
}

func TestLosingTheContextCancelsTheSyncAndWaitsForIt(t *testing.T) {
	var returned atomic.Bool
	started := make(chan struct{})
	d := New(SyncerFunc(func(ctx context.Context) Outcome {
		close(started)
		<-ctx.Done()
		time.Sleep(100 * time.Millisecond) // a sync that takes a moment to unwind
		returned.Store(true)
		return Outcome{Err: ctx.Err()}
	}), Options{Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, d, nil)
	<-started
	cancel()
	r := <-done
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", r.err)
	}
	if !returned.Load() {
		t.Error("Run returned before the cancelled sync did")
	}
	// Triggers made after leadership is lost are kept for the next Run.
	if q, err := d.Trigger(ReasonWebhook); err != nil || !q {
		t.Errorf("Trigger after a hard stop = %v, %v", q, err)
	}
}

type recorder struct {
	mu       sync.Mutex
	outcomes []Outcome
}

func (r *recorder) RecordSync(o Outcome, _ time.Duration) {
	r.mu.Lock()
	r.outcomes = append(r.outcomes, o)
	r.mu.Unlock()
}

func TestOutcomesReachTheRecorderAndStatus(t *testing.T) {
	rec := &recorder{}
	fetched := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	outs := []Outcome{{Revision: "r1", FetchedAt: fetched}, {Err: errors.New("fetch failed"), Decision: reconcile.Decision{Reaction: reconcile.ReactFail}}}
	var i atomic.Int32
	d := New(SyncerFunc(func(context.Context) Outcome { return outs[min(int(i.Add(1))-1, 1)] }),
		Options{Schedule: Schedule{PollInterval: time.Hour}, Recorder: rec, Logger: quietLogger()})
	stop := make(chan struct{})
	done := startRun(context.Background(), d, stop)
	deadline := time.Now().Add(5 * time.Second)
	for d.Status().Syncs < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	_, _ = d.Trigger(ReasonExplicit)
	for d.Status().Syncs < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	<-done
	s := d.Status()
	if s.Syncs != 2 || s.LastResult != reconcile.ResultFailed || !s.LastFetchedAt.Equal(fetched) || s.Revision != "r1" {
		t.Errorf("status %+v: a failed fetch must keep the last fetch time and revision", s)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.outcomes) != 2 || rec.outcomes[0].Revision != "r1" {
		t.Errorf("recorded %+v", rec.outcomes)
	}
}
