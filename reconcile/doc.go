// Package reconcile converges the world to the fleet repo. One sync is five
// steps, each in its own file:
//
//   - observe.go: Observe lists every provider's machines, Rancher's clusters,
//     their machines and bindings, and node readiness into an Observed value;
//   - plan.go: Compute (Diff, then Gate) pairs desired with observed state
//     (pair.go) and returns a Plan, a pure function of its input: no context,
//     no I/O, no clock;
//   - gate.go: Gate holds back what the fleet's policy forbids this sync;
//   - apply.go: Apply runs the plan's actions, clusters in parallel, each
//     cluster's in order, every action idempotent;
//   - status.go, summary.go: RenderStatus reports the result as the files of
//     status/ in the fleet repo; statusread.go reads them back.
//
// internal/fleetsync.Loop runs the five, in this order, for every entry
// point (the daemon, apply, plan, the demo). cost.go prices plans and
// status, render.go prints plans as text and Markdown.
//
// The package declares the small interfaces it needs from infrastructure
// providers (Provider), Rancher (Registry) and downstream clusters (Nodes),
// and never imports a provider, git or an SDK. reconciletest holds in-memory
// fakes of all three.
package reconcile
