// Package daemon schedules the syncs of the fleet repo for `fleetd run`: one
// at a time, on a jittered poll, on webhooks and explicit requests, again
// soon while work is in progress, and with backoff after transient errors.
//
// It knows nothing of git, providers or HTTP. The sync itself is a Syncer
// (the sync loop in internal/fleetsync); what a sync reports is an Outcome,
// a plain struct, which a Recorder (internal/metrics) turns into metrics.
package daemon
