package fleetsync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// ObserveMode says where a sync's observed world comes from.
type ObserveMode int

const (
	// ObserveLive asks the providers and Rancher.
	ObserveLive ObserveMode = iota
	// ObserveStatus reads the last recorded status: a plan that needs no
	// credentials, for merge request pipelines.
	ObserveStatus
)

// Loop runs syncs of one fleet repo. It keeps, between syncs, the live world
// (rebuilt when fleet.yaml's providers or Rancher change), what history
// blobs said, and which clusters stalled at which revision. Sync calls run
// one at a time.
type Loop struct {
	// Source is where the fleet repo is read and status written.
	Source Source
	// World builds the live world (LiveWorld when nil). Unused with
	// ObserveStatus.
	World WorldFunc
	// Observe says where the observed world comes from.
	Observe ObserveMode
	// DryRun plans and reports, and changes nothing: no action runs and no
	// status is written. It never changes the plan.
	DryRun bool
	// NoStatus leaves the recorded status alone even when not a dry run.
	NoStatus bool
	// Apply tunes how actions run.
	Apply reconcile.ApplyOptions
	// CallTimeout bounds each call to a provider, Rancher or a downstream
	// cluster (DefaultCallTimeout when zero; see Bound).
	CallTimeout time.Duration
	// Logger receives operator logs (slog.Default() when nil).
	Logger *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu       sync.Mutex
	world    reconcile.World
	worldKey string
	closeW   func(context.Context)
	facts    factsCache
	stalled  map[string]stall
	stallRev string
	loaded   *loaded
	parse    schema.ParseCache
	prevSet  *parsedStatus
	// statuses decodes only the status files that changed since the
	// previous sync (most often, the sync's own status commit).
	statuses reconcile.StatusCache
	last     *lastSync
	// backoff holds, by cluster, the consecutive transient failures of
	// its actions and when they may run again.
	backoff map[string]reconcile.Backoff
}

type stall struct{ msg string }

// loaded is the fleet loaded from one commit.
type loaded struct {
	rev   string
	fleet *schema.Fleet
	diags schema.Diagnostics
}

// parsedStatus is a recorded status parsed once.
type parsedStatus struct {
	from string
	set  *reconcile.StatusSet
}

func (l *Loop) logger() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.Default()
}

func (l *Loop) now() time.Time {
	if l.Now != nil {
		return l.Now().UTC().Truncate(time.Second)
	}
	return time.Now().UTC().Truncate(time.Second)
}

// Close ends the live world's sessions.
func (l *Loop) Close(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closeW != nil {
		l.closeW(ctx)
		l.closeW = nil
	}
	l.world, l.worldKey = reconcile.World{}, ""
}

// Stage names the step of a sync.
type Stage string

// Stages of a sync, in order.
const (
	StageFetch   Stage = "fetch"
	StageLoad    Stage = "load"
	StageStatus  Stage = "read status"
	StageWorld   Stage = "connect"
	StageObserve Stage = "observe"
	StageApply   Stage = "apply"
	StageReport  Stage = "write status"
)

// Result is what one sync saw, did and reports.
type Result struct {
	// Snapshot is the revision synced; nil when the fetch failed.
	Snapshot *Snapshot
	// Loaded reports that the fetch and the load of fleet.yaml succeeded.
	Loaded      bool
	Fleet       *schema.Fleet
	Diagnostics schema.Diagnostics
	Desired     reconcile.Desired
	// Previous is the status the sync started from, and where it came from.
	Previous RecordedStatus
	Sync     reconcile.SyncResult
	// Changes are the clusters whose status changed.
	Changes []reconcile.StatusChange
	// StatusCommit is the status commit made ("" when none), and
	// StatusSubject its subject.
	StatusCommit  string
	StatusSubject string
	// Unreachable joins the providers and Rancher that could not be reached
	// or refused the credentials. A failure to observe one cluster (its
	// Rancher machines, its nodes) is in Err only.
	Unreachable error
	// Err joins every failure of the sync, each wrapped once with its step.
	Err error
	// FailedAt is the first step that failed ("" when none).
	FailedAt Stage
	// Reaction is what the failures call for (see Decide), and Requeue when
	// to sync again (0: at the poll interval).
	Reaction reconcile.Reaction
	Requeue  time.Duration
	// RetryAfter > 0 says a cluster backs off after transient failures:
	// sync again after this long at the latest, when its backoff runs out.
	RetryAfter time.Duration
}

func (r *Result) fail(stage Stage, err error) {
	if err == nil {
		return
	}
	if r.FailedAt == "" {
		r.FailedAt = stage
	}
	r.Err = errors.Join(r.Err, fmt.Errorf("%s: %w", stage, err))
}

// Sync runs one sync: fetch, load, desired state with its safety facts,
// previous status, observe, plan, gate, apply, fold, status commit.
func (l *Loop) Sync(ctx context.Context) *Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	log := l.logger()
	res := &Result{}
	defer l.decide(res)

	snap, err := l.Source.Snapshot(ctx)
	if err != nil {
		res.fail(StageFetch, classifyGit(err))
		return res
	}
	res.Snapshot = snap
	log = log.With("revision", snap.Revision)
	now := l.now()

	// The same revision loads to the same fleet: a poll that finds nothing
	// new does not load it again.
	var (
		fleet *schema.Fleet
		diags schema.Diagnostics
	)
	hist, created, herr := l.history(ctx, snap)
	if l.loaded != nil && l.loaded.rev == snap.Head && snap.Head != "" {
		fleet, diags = l.loaded.fleet, l.loaded.diags
	} else {
		// Files are parsed again only when their content changed; a
		// duplicate name is reported on the file history added later.
		fleet, diags = schema.Load(snap.FS, schema.WithParseCache(&l.parse), schema.WithCreationTimes(created))
		l.loaded = &loaded{rev: snap.Head, fleet: fleet, diags: diags}
	}
	unread := diags.Unreadable()
	if len(unread) > 0 {
		// A tree that was not read whole is read again by the next sync,
		// and what it lacks is not a removal (see desiredFrom).
		l.loaded = nil
		res.fail(StageLoad, reconcile.Transient(fmt.Errorf("%s was not read whole (%s): nothing is decommissioned and no TTL expires until it is", snap.Describe, unread[0])))
	}
	if herr != nil {
		res.fail(StageLoad, reconcile.Transient(fmt.Errorf("read the history of %s: %w", snap.Describe, herr)))
	}
	if snap.StatusMoved != "" {
		log.Warn("Status branch changed outside fleetd", "reason", snap.StatusMoved)
	}
	res.Fleet, res.Diagnostics = fleet, diags
	res.Loaded = fleet != nil
	d, hist := l.desiredFrom(ctx, snap, fleet, diags, hist, herr, now)
	if l.stallRev != snap.Revision {
		l.stalled, l.stallRev = nil, snap.Revision
	}
	for name, s := range l.stalled {
		if d.Stalled == nil {
			d.Stalled = map[string]string{}
		}
		d.Stalled[name] = s.msg
	}
	for name, b := range l.backoff {
		if b.Until.After(now) {
			if d.Backoff == nil {
				d.Backoff = map[string]reconcile.Backoff{}
			}
			d.Backoff[name] = b
		}
	}

	prev, err := l.Source.ReadStatus(ctx, fleet)
	if err != nil {
		res.fail(StageStatus, err)
		return res
	}
	res.Previous = prev
	var prevSet *reconcile.StatusSet
	if l.prevSet != nil && prev.From != "" && l.prevSet.from == prev.From {
		prevSet = l.prevSet.set
	} else if prevSet, err = l.statuses.ReadFiles(prev.Files); err == nil && prev.From != "" {
		l.prevSet = &parsedStatus{from: prev.From, set: prevSet}
	}
	if err != nil {
		// Status is a report: one that cannot be read is replaced, and
		// nothing destructive ever depended on it.
		log.Warn("Recorded status cannot be read: it is rewritten from what is observed", "from", prev.From, "error", err)
		res.Previous.Warning = fmt.Sprintf("the recorded status at %s cannot be read (%v): it is ignored", prev.From, err)
		prevSet = &reconcile.StatusSet{Clusters: map[string]*reconcile.ClusterStatus{}}
	}

	r := &reconcile.Reconciler{Logger: l.logger(), DryRun: l.DryRun || l.Observe == ObserveStatus, Apply: l.Apply}
	if l.last != nil && l.last.rev == snap.Revision && l.last.from == prev.From && prev.From != "" && !l.DryRun && l.Observe == ObserveLive {
		last := l.last
		r.Unchanged = func(o reconcile.Observed, p *reconcile.Plan, now time.Time) bool {
			return reflect.DeepEqual(o, last.observed) && reflect.DeepEqual(*p, last.plan) && expiring(p, now) == last.expiring
		}
	}
	var observed reconcile.Observed
	switch {
	case fleet == nil && len(unread) > 0:
		// Already failed above, as a read to try again.
	case fleet == nil:
		res.fail(StageLoad, reconcile.Stalled(errors.New("fleet.yaml is invalid: nothing changes until it is fixed")))
	case l.Observe == ObserveStatus:
		observed = prevSet.Observed()
	default:
		w, err := l.liveWorld(ctx, fleet, log)
		if err != nil {
			res.fail(StageWorld, err)
			res.Unreachable = err
			return res
		}
		r.World = w
		var oerr error
		observed, oerr = reconcile.Observe(reconcile.WithLogger(ctx, log), fleet, w, reconcile.ObserveOptions{Concurrency: l.Apply.Concurrency})
		if oerr != nil {
			log.Warn("Observation incomplete: the clusters it concerns are left alone", "error", oerr)
			res.fail(StageObserve, oerr)
			// A failure of one cluster (its machines, its nodes) is that
			// cluster's; only a peer that could not be observed at all
			// makes the sync's observation unreachable.
			res.Unreachable = observed.Unreachable()
		}
	}
	if err := l.removals(ctx, &d, hist, snap, observed); err != nil {
		log.Warn("Safety facts unavailable: nothing is decommissioned and no TTL expires", "error", err)
		res.fail(StageLoad, reconcile.Transient(fmt.Errorf("%w: nothing is decommissioned and no TTL expires until it is", err)))
	}
	res.Desired = d
	res.Sync = r.SyncObserved(ctx, d, observed, prevSet, now)
	if a := res.Sync.Applied; a != nil {
		for _, c := range a.Clusters {
			if c.Reaction == reconcile.ReactStall {
				if l.stalled == nil {
					l.stalled = map[string]stall{}
				}
				l.stalled[c.Cluster] = stall{msg: c.Err.Error()}
			}
		}
		l.noteFailures(a, d.Backoff, now)
		// A cluster waiting for something in progress has not failed.
		var errs []error
		for _, c := range a.Clusters {
			if c.Err != nil && c.Reaction != reconcile.ReactRequeue {
				errs = append(errs, fmt.Errorf("cluster %s: %w", c.Cluster, c.Err))
			}
		}
		res.fail(StageApply, errors.Join(errs...))
	}
	if res.Sync.StatusUnchanged {
		// The world, the plan and the revision are those of the previous
		// sync, whose status is recorded: nothing to render or commit.
		return res
	}
	res.Changes = reconcile.StatusChanges(prev.Files, res.Sync.Status)
	if l.DryRun || l.NoStatus || l.Observe == ObserveStatus {
		return res
	}
	msg := statusMessage(res.Changes)
	commit, committed, err := l.Source.WriteStatus(ctx, fleet, res.Sync.Status, msg)
	if err != nil {
		res.fail(StageReport, reconcile.Transient(err))
		return res
	}
	if committed {
		res.StatusCommit, res.StatusSubject = cmp.Or(commit, "written"), msg.Subject
		log.Info("Status recorded", "commit", commit, "subject", msg.Subject)
	}
	if res.Err == nil {
		if rs, err := l.Source.ReadStatus(ctx, fleet); err == nil && rs.From != "" {
			l.last = &lastSync{rev: snap.Revision, from: rs.From, observed: res.Sync.After, plan: res.Sync.Plan, expiring: expiring(&res.Sync.Plan, now)}
		}
	}
	return res
}

// lastSync is what a successful sync saw and recorded: a next sync that
// sees the same needs no new status.
type lastSync struct {
	rev, from string
	observed  reconcile.Observed
	plan      reconcile.Plan
	expiring  string
}

// expiring lists the temporary clusters within reconcile.ExpiringWindow of
// their expiry at now: their phase changes with the clock alone.
func expiring(p *reconcile.Plan, now time.Time) string {
	var b strings.Builder
	for i := range p.Clusters {
		if e := p.Clusters[i].ExpiresAt; e != nil && e.Sub(now) <= reconcile.ExpiringWindow {
			b.WriteString(p.Clusters[i].Name)
			b.WriteByte(',')
		}
	}
	return b.String()
}

// statusMessage names in the subject the clusters whose facts changed; one
// whose status changed only by its spec commit is listed in the body only,
// unless nothing else changed.
func statusMessage(changes []reconcile.StatusChange) fgit.Message {
	var facts, all []fgit.ClusterChange
	for _, c := range changes {
		cc := fgit.ClusterChange{Cluster: c.Team + "/" + c.Cluster, Summary: c.Summary}
		all = append(all, cc)
		if !c.SpecOnly {
			facts = append(facts, cc)
		}
	}
	if len(facts) == 0 {
		return fgit.StatusMessage(all)
	}
	msg := fgit.StatusMessage(facts)
	msg.Body = fgit.StatusMessage(all).Body
	return msg
}

// liveWorld returns the live world of fleet, building it when fleet.yaml's
// providers or Rancher changed since the last sync.
func (l *Loop) liveWorld(ctx context.Context, fleet *schema.Fleet, log *slog.Logger) (reconcile.World, error) {
	key := worldKey(fleet)
	if l.worldKey == key {
		return l.world, nil
	}
	if l.closeW != nil {
		l.closeW(ctx)
		l.closeW = nil
	}
	build := l.World
	if build == nil {
		build = LiveWorld
	}
	w, closeW, err := build(ctx, fleet, log)
	if err != nil {
		l.world, l.worldKey = reconcile.World{}, ""
		return reconcile.World{}, err
	}
	w = Bound(w, l.CallTimeout)
	l.world, l.worldKey, l.closeW = w, key, closeW
	return w, nil
}

// classifyGit marks fetch failures: credentials, host keys and missing
// repositories or branches need a person; the rest may pass.
func classifyGit(err error) error {
	for _, kind := range []error{fgit.ErrAuth, fgit.ErrHostKey, fgit.ErrRepositoryNotFound, fgit.ErrBranchNotFound} {
		if errors.Is(err, kind) {
			return reconcile.Stalled(err)
		}
	}
	var st *reconcile.StalledError
	if errors.As(err, &st) {
		return err
	}
	return reconcile.Transient(err)
}
