package daemon

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

// A sync that waits on its context for ever ends at the sync timeout as a
// transient failure that says the sync ran out of time, and the daemon goes
// on syncing.
func TestSyncEndsAtItsDeadlineAndTheDaemonSyncsOn(t *testing.T) {
	var calls atomic.Int32
	outcomes := make(chan Outcome, 10)
	s := SyncerFunc(func(ctx context.Context) Outcome {
		calls.Add(1)
		<-ctx.Done() // a peer that never answers, behind a call that honours ctx
		return Outcome{}
	})
	rec := recorderFunc(func(o Outcome) { outcomes <- o })
	d := New(s, Options{SyncTimeout: 50 * time.Millisecond, Logger: quietLogger(), Recorder: rec,
		Schedule: Schedule{BackoffMin: time.Millisecond, BackoffMax: time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	res := startRun(ctx, d, nil)
	for i := 0; i < 2; i++ {
		select {
		case o := <-outcomes:
			if o.Result() != reconcile.ResultRetry {
				t.Fatalf("sync %d: result %s (%v), want %s", i+1, o.Result(), o.Err, reconcile.ResultRetry)
			}
			var hung *reconcile.HungError
			if !errors.As(o.Err, &hung) || !strings.Contains(o.Err.Error(), "sync: no answer within 50ms") {
				t.Fatalf("sync %d: error %v, want one saying the sync ran out of time", i+1, o.Err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no sync ended: the sync has no deadline")
		}
	}
	cancel()
	<-res
}

// A sync that ignores its context is given up on: Run returns ErrSyncWedged
// so that the process exits and is restarted (or another replica leads).
func TestRunGivesUpOnASyncThatIgnoresItsDeadline(t *testing.T) {
	never := make(chan struct{})
	t.Cleanup(func() { close(never) })
	d := New(SyncerFunc(func(context.Context) Outcome { <-never; return Outcome{} }),
		Options{SyncTimeout: 20 * time.Millisecond, CancelGrace: 20 * time.Millisecond, Logger: quietLogger()})
	select {
	case r := <-startRun(context.Background(), d, nil):
		if !errors.Is(r.err, ErrSyncWedged) {
			t.Fatalf("Run returned %v, want ErrSyncWedged", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run waits for ever for a sync that ignores its context")
	}
}

func TestHealthFailsWhenNoSyncFinishesWithinThreeTimeouts(t *testing.T) {
	d := New(SyncerFunc(func(context.Context) Outcome { return Outcome{} }), Options{SyncTimeout: time.Minute, Logger: quietLogger()})
	now := time.Now()
	if err := d.Health(now); err != nil {
		t.Fatalf("a daemon that never ran: %v", err)
	}
	d.setRunning(now)
	if err := d.Health(now.Add(3 * time.Minute)); err != nil {
		t.Fatalf("a sync running for 3 timeouts: %v", err)
	}
	if err := d.Health(now.Add(3*time.Minute + time.Second)); err == nil || !strings.Contains(err.Error(), "has not finished") {
		t.Fatalf("a sync running for more than 3 timeouts: %v", err)
	}
	d.record(Outcome{}, 0, now)
	if err := d.Health(now.Add(3*time.Minute + time.Second)); err == nil || !strings.Contains(err.Error(), "has not started") {
		t.Fatalf("a sync due for more than 3 timeouts: %v", err)
	}
	d.setIdle()
	if err := d.Health(now.Add(time.Hour)); err != nil {
		t.Fatalf("a replica that does not lead: %v", err)
	}
}

type recorderFunc func(Outcome)

func (f recorderFunc) RecordSync(o Outcome, _ time.Duration) { f(o) }
