package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/daemon"
	"github.com/fleetd/fleetd/internal/fleetsync"
	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/internal/metrics"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// loopSyncer is `fleetd run`'s sync: the one sync loop on a clone kept in
// the work directory, on world with every provider call counted in the
// metrics.
func loopSyncer(_ context.Context, cfg RunConfig, m *metrics.Metrics, log *slog.Logger, world fleetsync.WorldFunc) (daemon.Syncer, error) {
	if cfg.WorkDir == "" {
		return nil, errors.New("run: --work-dir is empty")
	}
	src := &fleetsync.RepoSource{Options: fgit.Options{
		URL: cfg.RepoURL, Branch: cfg.Branch, Dir: cfg.WorkDir, Logger: log, Timeout: cfg.GitTimeout,
		Auth: fgit.Auth{TokenFile: cfg.HTTPSTokenFile, SSHKeyFile: cfg.SSHKeyFile, KnownHostsFile: cfg.SSHKnownHostsFile},
	}}
	loop := &fleetsync.Loop{
		Source: src, DryRun: cfg.DryRun, Logger: log, CallTimeout: cfg.CallTimeout,
		Apply: reconcile.ApplyOptions{Concurrency: cfg.Concurrency},
		World: func(ctx context.Context, f *schema.Fleet, log *slog.Logger) (reconcile.World, func(context.Context), error) {
			w, closeW, err := world(ctx, f, log)
			if err == nil && m != nil {
				for name, p := range w.Providers {
					w.Providers[name] = metrics.InstrumentProvider(p, m)
				}
				w = metrics.InstrumentRancher(w, m)
			}
			return w, closeW, err
		},
	}
	return &loopRunner{loop: loop, src: src}, nil
}

// loopRunner runs the loop for the daemon and ends its sessions on exit.
type loopRunner struct {
	loop *fleetsync.Loop
	src  *fleetsync.RepoSource
}

// Sync runs one sync of the loop.
func (r *loopRunner) Sync(ctx context.Context) daemon.Outcome {
	return outcomeOf(r.loop.Sync(ctx), time.Now())
}

// Close ends the providers' sessions (vCenter) and releases the clone.
func (r *loopRunner) Close(ctx context.Context) {
	r.loop.Close(ctx)
	_ = r.src.Close()
}

// outcomeOf reports a sync to the daemon: the loop's decision as it is
// (Result.Decision, which no one classifies again), and plain values of
// what the sync saw and did.
func outcomeOf(res *fleetsync.Result, now time.Time) daemon.Outcome {
	o := daemon.Outcome{Decision: res.Decision, Err: res.Err}
	if s := res.Snapshot; s != nil {
		// Fetched, whatever the load says: /readyz tells a remote that
		// cannot be fetched from a revision that does not load.
		o.Revision, o.FetchDuration, o.FetchedAt = s.Revision, s.FetchDuration, now
		if !res.Loaded {
			o.LoadError = loadError(res.Diagnostics)
		}
	} else if res.Err != nil {
		o.FetchError = firstLine(res.Err.Error())
	}
	o.Actions = actionResults(res)
	if res.Snapshot != nil && res.Fleet != nil && res.FailedAt != fleetsync.StageWorld {
		o.Machines = machineCounts(res.After)
		o.Costs = make([]daemon.ClusterCost, 0, len(res.Plan.Clusters))
		for _, cp := range res.Plan.Clusters {
			if cp.Desired || cp.Observed {
				o.Costs = append(o.Costs, daemon.ClusterCost{Team: cp.Team, Cluster: cp.Name, Hourly: cp.After.Hourly})
			}
		}
	}
	if res.Statuses != nil {
		o.ClusterStates = make([]daemon.ClusterState, 0, len(res.Statuses))
		for _, st := range res.Statuses {
			cs := daemon.ClusterState{Team: st.Team, Cluster: st.Cluster, Phase: string(st.Phase), Conditions: make(map[string]string, len(st.Conditions))}
			for _, c := range st.Conditions {
				cs.Conditions[c.Type] = c.Status
			}
			o.ClusterStates = append(o.ClusterStates, cs)
		}
	}
	if res.Snapshot != nil && res.Fleet != nil {
		o.Held = map[string]int{}
		for _, cp := range res.Plan.Clusters {
			for _, a := range cp.Actions {
				if !a.Runnable() && !a.Deferred {
					o.Held[actionKey(a.Kind)]++
				}
			}
		}
	}
	return o
}

// loadError sums up why a fetched revision did not load, in one line: the
// first error and how many more there are (all of them are in the log and
// in status).
func loadError(ds schema.Diagnostics) string {
	var errs []string
	for _, d := range ds {
		if d.Severity == schema.SeverityError {
			errs = append(errs, d.String())
		}
	}
	switch len(errs) {
	case 0:
		return "fleet.yaml is invalid"
	case 1:
		return firstLine(errs[0])
	default:
		return fmt.Sprintf("%s (and %d more)", firstLine(errs[0]), len(errs)-1)
	}
}

// firstLine returns s up to its first line break, at most 300 bytes.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}

// actionResults lists what became of each action of the plan: a cluster's
// runnable actions run in order until one fails, so its first Done ones
// succeeded, the next failed (or waits), and the rest did not run.
func actionResults(res *fleetsync.Result) []daemon.ActionResult {
	var out []daemon.ActionResult
	applied := res.Applied
	for _, cp := range res.Plan.Clusters {
		cr := applied.Cluster(cp.Name)
		n := 0
		for _, a := range cp.Actions {
			r := "ok"
			switch {
			case a.Deferred:
				r = "deferred"
			case !a.Runnable():
				r = "blocked"
			case applied == nil:
				r = "planned"
			case cr == nil:
				r = "skipped"
			case n < cr.Done:
				r = "ok"
			case n == cr.Done && cr.Err != nil:
				r = "failed"
				if cr.Reaction == reconcile.ReactRequeue {
					r = "waiting"
				}
			default:
				r = "skipped"
			}
			if a.Runnable() {
				n++
			}
			out = append(out, daemon.ActionResult{Action: actionKey(a.Kind), Result: r})
		}
	}
	return out
}

// actionKey is an action kind as a metric label value, without spaces
// ("create-machines").
func actionKey(k reconcile.ActionKind) string {
	b, err := k.MarshalText()
	if err != nil {
		return "unknown"
	}
	return string(b)
}

func machineCounts(o reconcile.Observed) []daemon.MachineCount {
	counts := map[[2]string]int{}
	for _, m := range o.Machines {
		counts[[2]string{m.Provider, string(m.State)}]++
	}
	out := make([]daemon.MachineCount, 0, len(counts))
	for k, n := range counts {
		out = append(out, daemon.MachineCount{Provider: k[0], State: k[1], N: n})
	}
	slices.SortFunc(out, func(a, b daemon.MachineCount) int {
		return strings.Compare(a.Provider+"\x00"+a.State, b.Provider+"\x00"+b.State)
	})
	return out
}
