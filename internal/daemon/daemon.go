package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

// DefaultSyncTimeout bounds one sync when Options.SyncTimeout is zero. Every
// call within a sync has a shorter deadline of its own; this one is the
// backstop for a sync that makes many slow calls.
const DefaultSyncTimeout = 10 * time.Minute

// Reasons a sync runs, as logged.
const (
	ReasonStart    = "start"    // the first sync after Run starts
	ReasonPoll     = "poll"     // the poll interval elapsed
	ReasonRequeue  = "requeue"  // work in progress asked for a short re-sync
	ReasonRetry    = "retry"    // backoff after a transient error
	ReasonWebhook  = "webhook"  // a push webhook for the tracked branch
	ReasonExplicit = "explicit" // POST /hooks/sync
)

// ErrStopping is returned by Trigger once a graceful stop has begun.
var ErrStopping = errors.New("daemon: stopping, no new syncs")

// ErrSyncWedged says a sync did not return within CancelGrace after its
// deadline passed: it ignores its context and may never return. The daemon
// stops (Run returns it) so that the process exits and a new one, or another
// replica, takes over; the wedged sync cannot be stopped any other way.
var ErrSyncWedged = errors.New("daemon: a sync did not return after its deadline passed")

// ErrStopTimeout says a sync did not return within the stop timeout and its
// grace after being cancelled.
var ErrStopTimeout = errors.New("daemon: the in-flight sync did not return in time")

// Recorder receives every sync's outcome and duration (internal/metrics
// implements it).
type Recorder interface {
	RecordSync(o Outcome, d time.Duration)
}

// Options configure a Daemon.
type Options struct {
	Schedule Schedule
	// StopTimeout is how long a graceful stop lets the in-flight sync run
	// before cancelling its context (default 2 min). After the cancel the
	// sync gets CancelGrace (default 10s) to return.
	StopTimeout time.Duration
	CancelGrace time.Duration
	// SyncTimeout bounds one sync (DefaultSyncTimeout when zero): its
	// context ends then, and the sync ends as a transient failure. A sync
	// that has not returned CancelGrace later is wedged: Run returns
	// ErrSyncWedged.
	SyncTimeout time.Duration
	// Recorder, when set, receives every outcome.
	Recorder Recorder
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Rand returns numbers in [0, 1) for the jitter; math/rand/v2 by default.
	Rand func() float64
}

// Status is what the daemon knows about its syncs, for /readyz and logs.
type Status struct {
	// LastFetchedAt is the FetchedAt of the latest sync whose fetch
	// succeeded; zero before the first.
	LastFetchedAt time.Time
	// LastFetchError is the FetchError of the latest sync ("" when it
	// fetched), and LoadError the LoadError of the latest sync that fetched.
	LastFetchError string
	LoadError      string
	// Revision is the latest revision synced.
	Revision string
	// LastResult and LastSyncEnded describe the latest finished sync.
	LastResult    string
	LastSyncEnded time.Time
	// Syncs counts finished syncs; Running says one is in flight.
	Syncs   int
	Running bool
	// Next is when the next scheduled sync is due (zero while one runs, and
	// while Run is not running: a replica that does not lead).
	Next time.Time
	// Started is when the sync in flight started (zero when none runs).
	Started time.Time
}

// Daemon runs a Syncer one sync at a time. Triggers (Trigger) coalesce: at
// most one sync runs and at most one waits; more triggers while one waits
// are absorbed by it. Create it with New.
type Daemon struct {
	syncer Syncer
	opts   Options
	log    *slog.Logger

	// queued holds at most one pending trigger's reason.
	queued chan string

	mu       sync.Mutex
	status   Status
	stopping bool
}

// New returns a Daemon that runs s.
func New(s Syncer, opts Options) *Daemon {
	opts.Schedule = opts.Schedule.WithDefaults()
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 2 * time.Minute
	}
	if opts.CancelGrace <= 0 {
		opts.CancelGrace = 10 * time.Second
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = DefaultSyncTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	return &Daemon{syncer: s, opts: opts, log: opts.Logger, queued: make(chan string, 1)}
}

// Trigger asks for a sync as soon as the one in flight, if any, has ended.
// It never blocks and never runs the sync itself. It reports whether the
// trigger started a new queued sync (true) or joined one already queued
// (false); it returns ErrStopping once a graceful stop has begun. A trigger
// made while this replica does not lead waits for it to lead.
func (d *Daemon) Trigger(reason string) (queued bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		return false, ErrStopping
	}
	select {
	case d.queued <- reason:
		return true, nil
	default:
		return false, nil
	}
}

// Status returns a snapshot of the daemon's state.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}

// Run schedules syncs until stop is closed or ctx is done, and can be called
// again after it returned (a replica that leads again).
//
// Closing stop is the graceful path (SIGTERM): no trigger is taken any more,
// the in-flight sync gets StopTimeout to finish, then its context is
// cancelled and it gets CancelGrace to return; Run returns nil, or
// ErrStopTimeout when the sync never returned.
//
// ctx being done is the hard path (leadership lost): the in-flight sync's
// context, derived from ctx, is cancelled at once, and Run returns ctx's
// error only after the sync has returned, so that a replica that lost the
// Lease never syncs alongside the new leader.
func (d *Daemon) Run(ctx context.Context, stop <-chan struct{}) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	failures := 0
	timer := time.NewTimer(0)
	defer timer.Stop()
	nextReason := ReasonStart
	d.setNext(time.Now())

	defer d.setIdle()
	var (
		running    chan Outcome // nil while idle
		syncCtx    context.Context
		cancelSync context.CancelFunc
		started    time.Time
		reason     string
		// deadline is the cause of a sync's context ending at SyncTimeout:
		// every call cut short by it names it.
		deadline = &reconcile.HungError{Call: "sync", After: d.opts.SyncTimeout}
		// wedged fires CancelGrace after the sync's deadline.
		wedged = time.NewTimer(0)
	)
	defer wedged.Stop()
	wedged.Stop()
	start := func(why string) {
		timer.Stop()
		reason = why
		started = time.Now()
		syncCtx, cancelSync = context.WithTimeoutCause(ctx, d.opts.SyncTimeout, deadline)
		running = make(chan Outcome, 1)
		wedged.Reset(d.opts.SyncTimeout + d.opts.CancelGrace)
		d.setRunning(started)
		d.log.Info("Sync starting", "reason", why)
		go func(ch chan<- Outcome) { ch <- d.syncer.Sync(syncCtx) }(running)
	}
	finish := func(o Outcome) {
		wedged.Stop()
		if context.Cause(syncCtx) == deadline && !(o.Decision.Reaction == reconcile.ReactRetry && o.Decision.Backoff) {
			// Whatever the sync made of its cut-short calls, a sync that
			// ran out of time is retried, with backoff.
			o.Err = errors.Join(deadline, o.Err)
			o.Decision.Reaction, o.Decision.Backoff, o.Decision.Reason = reconcile.ReactRetry, true, deadline.Error()
		}
		cancelSync()
		dur := time.Since(started)
		var delay time.Duration
		delay, failures = d.opts.Schedule.NextDelay(o, failures, d.opts.Rand)
		switch {
		case o.Decision.Reaction == reconcile.ReactRetry:
			nextReason = ReasonRetry
		case o.Decision.Requeue > 0 || o.Decision.Reaction == reconcile.ReactRequeue:
			nextReason = ReasonRequeue
		default:
			nextReason = ReasonPoll
		}
		d.record(o, dur, time.Now().Add(delay))
		if d.opts.Recorder != nil {
			d.opts.Recorder.RecordSync(o, dur)
		}
		attrs := []any{"reason", reason, "revision", o.Revision, "result", o.Result(),
			"duration", dur.Round(time.Millisecond).String(), "next", delay.Round(time.Millisecond).String()}
		if dec := o.Decision; dec.Requeue > 0 || dec.RetryAfter > 0 {
			attrs = append(attrs, "requeue", dec.Requeue.String(), "retry_after", dec.RetryAfter.Round(time.Millisecond).String())
		}
		if o.Err != nil {
			d.log.Error("Sync ended with errors", append(attrs, "error", o.Err.Error())...)
		} else {
			d.log.Info("Sync ended", attrs...)
		}
		running = nil
		timer.Reset(delay)
	}

	for {
		// A stop wins over a due sync: select picks among ready cases at
		// random, and no sync may start once a stop has been asked for.
		select {
		case <-stop:
			d.setStopping()
			if running == nil {
				return nil
			}
			return d.drain(running, cancelSync, finish)
		default:
		}
		var (
			triggers <-chan string
			tick     <-chan time.Time
		)
		if running == nil {
			triggers, tick = d.queued, timer.C
		}
		select {
		case <-stop:
			d.setStopping()
			if running == nil {
				return nil
			}
			return d.drain(running, cancelSync, finish)
		case <-ctx.Done():
			if running != nil {
				d.log.Warn("Cancelling the in-flight sync", "cause", context.Cause(ctx).Error())
				cancelSync()
				select {
				case o := <-running:
					finish(o)
				case <-wedged.C:
					return d.wedged(started)
				}
			}
			return ctx.Err()
		case <-wedged.C:
			return d.wedged(started)
		case why := <-triggers:
			start(why)
		case <-tick:
			start(nextReason)
		case o := <-running:
			finish(o)
		}
	}
}

// drain waits for the in-flight sync during a graceful stop.
func (d *Daemon) drain(running <-chan Outcome, cancel context.CancelFunc, finish func(Outcome)) error {
	d.log.Info("Stopping: waiting for the in-flight sync", "timeout", d.opts.StopTimeout.String())
	t := time.NewTimer(d.opts.StopTimeout)
	defer t.Stop()
	select {
	case o := <-running:
		finish(o)
		return nil
	case <-t.C:
	}
	d.log.Warn("Stopping: the in-flight sync did not finish in time; cancelling it", "grace", d.opts.CancelGrace.String())
	cancel()
	t.Reset(d.opts.CancelGrace)
	select {
	case o := <-running:
		finish(o)
		return nil
	case <-t.C:
		return ErrStopTimeout
	}
}

func (d *Daemon) setStopping() {
	d.mu.Lock()
	d.stopping = true
	d.mu.Unlock()
}

func (d *Daemon) setRunning(started time.Time) {
	d.mu.Lock()
	d.status.Running = true
	d.status.Started = started
	d.status.Next = time.Time{}
	d.mu.Unlock()
}

// setIdle records that Run returned: no sync is due until it runs again. A
// wedged sync stays Running.
func (d *Daemon) setIdle() {
	d.mu.Lock()
	d.status.Next = time.Time{}
	d.mu.Unlock()
}

// wedged gives up on a sync that ignores its context.
func (d *Daemon) wedged(started time.Time) error {
	d.log.Error("A sync did not return after its deadline: stopping so that the process is restarted",
		"started", started.UTC().Format(time.RFC3339), "sync_timeout", d.opts.SyncTimeout.String(), "grace", d.opts.CancelGrace.String())
	return ErrSyncWedged
}

// Health reports whether syncs still finish: it fails when a sync has been
// due (running, or scheduled and not started) for longer than three sync
// timeouts, so a liveness probe restarts a process whose syncs stopped
// finishing. A replica that does not lead has no sync due and is healthy.
func (d *Daemon) Health(now time.Time) error {
	d.mu.Lock()
	s := d.status
	d.mu.Unlock()
	bound := 3 * d.opts.SyncTimeout
	switch {
	case s.Running && now.Sub(s.Started) > bound:
		return fmt.Errorf("the sync started %s ago has not finished (limit %s, 3 × the sync timeout)",
			now.Sub(s.Started).Round(time.Second), bound)
	case !s.Running && !s.Next.IsZero() && now.Sub(s.Next) > bound:
		return fmt.Errorf("a sync due %s ago has not started (limit %s, 3 × the sync timeout)",
			now.Sub(s.Next).Round(time.Second), bound)
	}
	return nil
}

func (d *Daemon) setNext(t time.Time) {
	d.mu.Lock()
	d.status.Next = t
	d.mu.Unlock()
}

func (d *Daemon) record(o Outcome, _ time.Duration, next time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.status
	s.Running = false
	s.Started = time.Time{}
	s.Syncs++
	s.LastResult = o.Result()
	s.LastSyncEnded = time.Now()
	s.Next = next
	if o.Revision != "" {
		s.Revision = o.Revision
	}
	if !o.FetchedAt.IsZero() {
		s.LastFetchedAt = o.FetchedAt
	}
	s.noteFetch(o)
}

// Stopping reports whether a graceful stop has begun.
func (d *Daemon) Stopping() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopping
}
