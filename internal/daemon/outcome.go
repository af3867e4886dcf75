package daemon

import (
	"context"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

// Syncer runs one sync of the fleet repo: fetch, load, observe, plan, gate,
// apply and report. The daemon never calls Sync twice at once. Sync must
// return soon after ctx is done; a sync cut short that way is safe to repeat,
// because every action is idempotent.
type Syncer interface {
	Sync(ctx context.Context) Outcome
}

// SyncerFunc adapts a function to a Syncer.
type SyncerFunc func(ctx context.Context) Outcome

// Sync calls f(ctx).
func (f SyncerFunc) Sync(ctx context.Context) Outcome { return f(ctx) }

// Outcome is what one sync reports. The sync loop fills it; it holds plain
// values so that the loop needs no metrics library.
//
// The gauges' inputs (Clusters, Machines, Costs) follow one rule: nil means
// "not known this time" (the fetch or the observation failed) and leaves the
// last reported values as they are; a non-nil value, even an empty one,
// replaces them, so the series of a cluster that is gone disappear.
type Outcome struct {
	// Revision is the commit synced; "" when the fetch failed.
	Revision string
	// FetchedAt is when the fetch succeeded, whether or not the revision
	// then loaded; zero when it failed. /readyz uses it.
	FetchedAt time.Time
	// FetchError says why the fetch failed ("" when it succeeded or did not
	// run), and LoadError why the fetched revision did not load (an invalid
	// fleet.yaml; "" when it loaded): for /readyz, one line each.
	FetchError string
	LoadError  string
	// FetchDuration is how long the git fetch took; zero when there was none.
	FetchDuration time.Duration
	// Decision is what the sync's result calls for, as the sync loop
	// decided it: it alone decides when the next sync runs (see
	// NextDelay) and how the sync is counted.
	Decision reconcile.Decision
	// Err is the sync's error for the log, nil on success; it is never
	// classified again.
	Err error
	// Actions lists the actions the sync executed and how each ended.
	Actions []ActionResult
	// ClusterStates are each cluster's phase and conditions, from the
	// statuses the sync computed (nil when not known this time).
	ClusterStates []ClusterState
	// Held counts the actions the policy holds back now, by action.
	Held map[string]int
	// Machines counts the observed machines by provider and state.
	Machines []MachineCount
	// Costs is the hourly cost of each cluster.
	Costs []ClusterCost
}

// ClusterState is one cluster's phase and conditions (type → "True" or
// "False").
type ClusterState struct {
	Team, Cluster string
	Phase         string
	Conditions    map[string]string
}

// ActionResult is one action of the plan: its kind as a key
// ("create-machines", ...) and its result ("ok", "failed",
// "blocked", ...).
type ActionResult struct {
	Action string
	Result string
}

// MachineCount is the number of machines of one provider in one state.
type MachineCount struct {
	Provider string
	State    string
	N        int
}

// ClusterCost is the cost per hour of one cluster.
type ClusterCost struct {
	Team    string
	Cluster string
	Hourly  float64
}

// Result names the outcome for metrics and logs (see reconcile.Decision).
func (o Outcome) Result() string { return o.Decision.Result() }

// Succeeded reports whether nothing failed: no error, or only a wait.
func (o Outcome) Succeeded() bool { return o.Decision.Succeeded() }
