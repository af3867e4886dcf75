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
	// World builds the live world (see internal/live); it is handed to the
	// loop, which knows no provider. Required unless Observe is
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

	mu  sync.Mutex
	mem memory
}

// memory is everything a Loop keeps between syncs. None of it is a fact a
// destructive decision rests on: a restart that loses it costs time (a new
// clone's reads, parses and sessions), never safety.
type memory struct {
	// world is the live world built for worldKey (fleet.yaml's providers
	// and Rancher), and closeW ends its sessions.
	world    reconcile.World
	worldKey string
	closeW   func(context.Context)
	// facts is what history blobs said; parse the cluster files parsed, by
	// content; loaded the fleet loaded from the last head.
	facts  factsCache
	parse  schema.ParseCache
	loaded *loaded
	// prevSet is the recorded status, parsed; last what the last
	// successful sync saw and recorded (a sync that sees the same renders
	// nothing).
	prevSet *parsedStatus
	last    *lastSync
	// stalled are the clusters that stalled at revision stallRev: not
	// retried until the revision changes.
	stalled  map[string]stall
	stallRev string
	// statuses decodes only the status files that changed since the
	// previous sync (most often, the sync's own status commit).
	statuses reconcile.StatusCache
	// backoff holds, by cluster, the consecutive transient failures of
	// its actions and when they may run again; peers the same of each
	// provider (by name) and of Rancher (peerRancher) whose observation
	// failed transiently: not called again until then.
	backoff map[string]reconcile.Backoff
	peers   map[string]reconcile.Backoff
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

// clock is the time now, to the nanosecond (Now when set): what backoffs
// count from.
func (l *Loop) clock() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
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
	if l.mem.closeW != nil {
		l.mem.closeW(ctx)
		l.mem.closeW = nil
	}
	l.mem.world, l.mem.worldKey = reconcile.World{}, ""
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
	// Observed is the world as the sync saw it (the recorded status's, for
	// a plan from status), and After the same with what apply did folded in.
	Observed, After reconcile.Observed
	// Plan is what the sync planned, gated.
	Plan reconcile.Plan
	// Applied is what apply did; nil in a dry run or when nothing ran.
	Applied *reconcile.ApplyResult
	// Statuses are the clusters' statuses as the sync left them, and Status
	// the status files rendered from them, by path (see
	// reconcile.RenderStatus). Both are nil when StatusUnchanged.
	Statuses []*reconcile.ClusterStatus
	Status   map[string][]byte
	// StatusUnchanged says the world, the plan and the revision are those
	// of the previous sync, whose status is recorded: nothing was rendered.
	StatusUnchanged bool
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
	// Decision is what the sync's result calls for (see decide): the one
	// classification of it that every caller uses.
	Decision reconcile.Decision

	// requeue is how soon work in progress wants the next sync (0: none),
	// and syncBackoff says a failure concerns the sync as a whole.
	requeue     time.Duration
	syncBackoff bool
}

func (r *Result) fail(stage Stage, err error) {
	if err == nil {
		return
	}
	if r.FailedAt == "" {
		r.FailedAt = stage
	}
	if stage != StageApply && stage != StageObserve {
		r.syncBackoff = true
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
	if l.mem.loaded != nil && l.mem.loaded.rev == snap.Head && snap.Head != "" {
		fleet, diags = l.mem.loaded.fleet, l.mem.loaded.diags
	} else {
		// Files are parsed again only when their content changed; a
		// duplicate name is reported on the file history added later.
		fleet, diags = schema.Load(snap.FS, schema.WithParseCache(&l.mem.parse), schema.WithCreationTimes(created))
		l.mem.loaded = &loaded{rev: snap.Head, fleet: fleet, diags: diags}
	}
	unread := diags.Unreadable()
	if len(unread) > 0 {
		// A tree that was not read whole is read again by the next sync,
		// and what it lacks is not a removal (see desiredFrom).
		l.mem.loaded = nil
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
	d, ferr := l.desiredFrom(ctx, snap, fleet, diags, hist, herr, now)
	if ferr != nil {
		log.Warn("Safety facts unavailable: nothing is decommissioned and no TTL expires", "error", ferr)
		res.fail(StageLoad, reconcile.Transient(fmt.Errorf("%w: nothing is decommissioned and no TTL expires until it is", ferr)))
	}
	if l.mem.stallRev != snap.Revision {
		l.mem.stalled, l.mem.stallRev = nil, snap.Revision
	}
	for name, s := range l.mem.stalled {
		if d.Stalled == nil {
			d.Stalled = map[string]string{}
		}
		d.Stalled[name] = s.msg
	}
	clock := l.clock()
	for name, b := range l.mem.backoff {
		if b.Until.After(clock) {
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
	if l.mem.prevSet != nil && prev.From != "" && l.mem.prevSet.from == prev.From {
		prevSet = l.mem.prevSet.set
	} else if prevSet, err = l.mem.statuses.ReadFiles(prev.Files); err == nil && prev.From != "" {
		l.mem.prevSet = &parsedStatus{from: prev.From, set: prevSet}
	}
	if err != nil {
		// Status is a report: one that cannot be read is replaced, and
		// nothing destructive ever depended on it.
		log.Warn("Recorded status cannot be read: it is rewritten from what is observed", "from", prev.From, "error", err)
		res.Previous.Warning = fmt.Sprintf("the recorded status at %s cannot be read (%v): it is ignored", prev.From, err)
		prevSet = &reconcile.StatusSet{Clusters: map[string]*reconcile.ClusterStatus{}}
	}

	dry := l.DryRun || l.Observe == ObserveStatus
	var (
		observed reconcile.Observed
		world    reconcile.World
		live     bool
	)
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
		world, live = w, true
		var oerr error
		observed, oerr = l.observe(reconcile.WithLogger(ctx, log), res, fleet, w)
		if oerr != nil {
			log.Warn("Observation incomplete: the clusters it concerns are left alone", "error", oerr)
			res.fail(StageObserve, oerr)
			// A failure of one cluster (its machines, its nodes) is that
			// cluster's; only a peer that could not be observed at all
			// makes the sync's observation unreachable.
			res.Unreachable = observed.Unreachable()
		}
	}
	res.Desired = d

	// The steps of a sync: plan (Compute, with the gate), apply, fold what
	// apply did into the observed world, render the status from that.
	res.Observed = observed.WithTemplates(prevSet)
	var limits schema.Limits
	if fleet != nil {
		limits = fleet.Spec.Policy.Limits()
	}
	res.Plan = reconcile.Compute(d, res.Observed, limits, now)
	logPlan(log, &res.Plan)
	var requeue time.Duration
	if !dry && live {
		applied := reconcile.Apply(reconcile.WithLogger(ctx, l.logger()), res.Plan, world, l.Apply)
		res.Applied = &applied
		requeue = applied.Requeue
		l.noteApplied(res, &applied, d.Backoff, now)
	} else if res.Plan.InProgress() {
		requeue = cmp.Or(l.Apply.Requeue, reconcile.DefaultRequeue)
	}
	res.requeue = requeue
	res.After = reconcile.Fold(res.Observed, res.Applied)
	if last := l.mem.last; last != nil && last.rev == snap.Revision && last.from == prev.From && prev.From != "" && !dry &&
		(res.Applied == nil || len(res.Applied.Clusters) == 0) &&
		reflect.DeepEqual(res.After, last.observed) && reflect.DeepEqual(res.Plan, last.plan) && expiring(&res.Plan, now) == last.expiring {
		// The world, the plan and the revision are those of the previous
		// sync, whose status is recorded: nothing to render or commit.
		res.StatusUnchanged = true
		return res
	}
	in := reconcile.StatusInput{Desired: d, Observed: res.After, Plan: res.Plan, Apply: res.Applied, Previous: prevSet, Now: now}
	res.Statuses = reconcile.ComputeStatus(in)
	res.Status = reconcile.StatusFiles(in, res.Statuses)
	res.Changes = reconcile.StatusChanges(prev.Files, res.Status)
	if dry || l.NoStatus {
		return res
	}
	msg := statusMessage(res.Changes)
	commit, committed, err := l.Source.WriteStatus(ctx, fleet, res.Status, msg)
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
			l.mem.last = &lastSync{rev: snap.Revision, from: rs.From, observed: res.After, plan: res.Plan, expiring: expiring(&res.Plan, now)}
		}
	}
	return res
}

// noteApplied keeps what apply's per-cluster results mean for later syncs:
// a cluster that stalled is not retried at this revision, one that failed
// transiently backs off; and it adds the failures to the sync's error. A
// cluster waiting for something in progress has not failed.
func (l *Loop) noteApplied(res *Result, a *reconcile.ApplyResult, held map[string]reconcile.Backoff, now time.Time) {
	var errs []error
	for _, c := range a.Clusters {
		if c.Reaction == reconcile.ReactStall {
			if l.mem.stalled == nil {
				l.mem.stalled = map[string]stall{}
			}
			l.mem.stalled[c.Cluster] = stall{msg: c.Err.Error()}
		}
		if c.Err != nil && c.Reaction != reconcile.ReactRequeue {
			errs = append(errs, fmt.Errorf("cluster %s: %w", c.Cluster, c.Err))
		}
	}
	l.noteFailures(a, held, now)
	res.fail(StageApply, errors.Join(errs...))
}

func logPlan(log *slog.Logger, p *reconcile.Plan) {
	if p.Blocked != "" {
		log.Warn("Nothing planned", "reason", p.Blocked)
		return
	}
	runnable, blocked := 0, 0
	for i := range p.Clusters {
		for _, a := range p.Clusters[i].Actions {
			if a.Runnable() {
				runnable++
			} else {
				blocked++
			}
		}
	}
	log.Info("Planned sync", "clusters", len(p.Clusters), "actions", runnable, "blocked", blocked)
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
	if l.mem.worldKey == key {
		return l.mem.world, nil
	}
	if l.mem.closeW != nil {
		l.mem.closeW(ctx)
		l.mem.closeW = nil
	}
	if l.World == nil {
		return reconcile.World{}, errors.New("the loop was given no world to observe (Loop.World is nil)")
	}
	w, closeW, err := l.World(ctx, fleet, log)
	if err != nil {
		l.mem.world, l.mem.worldKey = reconcile.World{}, ""
		return reconcile.World{}, err
	}
	w = Bound(w, l.CallTimeout)
	l.mem.world, l.mem.worldKey, l.mem.closeW = w, key, closeW
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
