package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/fleetd/fleetd/schema"
)

// Reconciler runs syncs against one world: observe, plan, gate, apply and
// report. It keeps no state between syncs; the previous status is an input.
type Reconciler struct {
	World World
	// Logger receives the sync's log lines (default slog.Default()).
	Logger *slog.Logger
	// DryRun plans and reports, and changes nothing. It never changes the plan.
	DryRun bool
	// Apply tunes how actions run; its Concurrency also bounds observation.
	Apply ApplyOptions
	// Unchanged, when set, is asked before the status is rendered after a
	// sync that changed nothing in the world: true means the status would
	// be the same as the previous sync's, and rendering is skipped
	// (SyncResult.Status is nil and StatusUnchanged true).
	Unchanged func(o Observed, p *Plan, now time.Time) bool
}

// SyncResult is what one sync saw, planned, did and reports.
type SyncResult struct {
	Observed Observed
	// After is Observed with the effects of apply folded in (Fold).
	After Observed
	Plan  Plan
	// Applied is nil in a dry run.
	Applied *ApplyResult
	// Status are the status files by path (see RenderStatus).
	Status map[string][]byte
	// Requeue asks for the next sync after this long; 0 leaves it to the
	// poll interval.
	Requeue time.Duration
	// ObserveErr joins what could not be observed (the plan left the
	// affected clusters alone).
	ObserveErr error
	// StatusUnchanged reports that rendering was skipped because Unchanged
	// said the status is the previous one.
	StatusUnchanged bool
}

// Err joins the failures of the sync: observation and per-cluster apply errors.
func (r *SyncResult) Err() error {
	if r.Applied == nil {
		return r.ObserveErr
	}
	if r.ObserveErr == nil {
		return r.Applied.Err()
	}
	if err := r.Applied.Err(); err != nil {
		return errors.Join(r.ObserveErr, err)
	}
	return r.ObserveErr
}

// Sync runs one sync of the desired fleet at now. previous is the status
// before it (nil for none): it supplies condition transition times and the
// templates of machines no longer in the repo. It is a report, never an
// input to a destructive decision: protection and removal come from d, which
// the git layer builds from history.
func (r *Reconciler) Sync(ctx context.Context, d Desired, previous *StatusSet, now time.Time) SyncResult {
	log := r.Logger
	if log == nil {
		log = LoggerFrom(ctx)
	}
	log = log.With("revision", d.Revision)
	o, oerr := Observe(WithLogger(ctx, log), d.Fleet, r.World, ObserveOptions{Concurrency: r.Apply.Concurrency})
	if oerr != nil {
		log.Warn("Observation incomplete", "error", oerr)
	}
	res := r.SyncObserved(ctx, d, o, previous, now)
	res.ObserveErr = oerr
	return res
}

// SyncObserved is Sync on a world observed by the caller (Observe, or the
// recorded status for a plan): it plans, gates, applies unless DryRun, folds
// what apply did into the observed world and renders the status.
func (r *Reconciler) SyncObserved(ctx context.Context, d Desired, o Observed, previous *StatusSet, now time.Time) SyncResult {
	log := r.Logger
	if log == nil {
		log = LoggerFrom(ctx)
	}
	applyCtx := WithLogger(ctx, log)
	log = log.With("revision", d.Revision)
	res := SyncResult{Observed: o}
	if previous != nil {
		prev := previous.Observed()
		for h, t := range prev.Templates {
			if _, ok := res.Observed.Templates[h]; !ok {
				if res.Observed.Templates == nil {
					res.Observed.Templates = map[string]Template{}
				}
				res.Observed.Templates[h] = t
			}
		}
	}

	var limits schema.Limits
	if d.Fleet != nil {
		limits = d.Fleet.Spec.Policy.Limits()
	}
	res.Plan = Compute(d, res.Observed, limits, now)
	logPlan(log, &res.Plan)

	if !r.DryRun {
		applied := Apply(applyCtx, res.Plan, r.World, r.Apply)
		res.Applied = &applied
		res.Requeue = applied.Requeue
	} else if res.Plan.InProgress() {
		res.Requeue = r.Apply.withDefaults(ctx).Requeue
	}
	// Status shows the world as the sync left it: the observed state with
	// what apply did folded in.
	res.After = Fold(res.Observed, res.Applied)
	if r.Unchanged != nil && (res.Applied == nil || len(res.Applied.Clusters) == 0) && r.Unchanged(res.After, &res.Plan, now) {
		res.StatusUnchanged = true
		return res
	}
	res.Status = RenderStatus(StatusInput{Desired: d, Observed: res.After, Plan: res.Plan, Apply: res.Applied, Previous: previous, Now: now})
	return res
}

func logPlan(log *slog.Logger, p *Plan) {
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
