// Package server is the daemon's HTTP face: push webhooks from GitLab and
// GitHub and an explicit sync request, each authenticated in constant time
// before its body is parsed and answered at once (the sync is queued, never
// run in the handler), plus /healthz, /readyz and /metrics.
package server
