// Package metrics holds fleetd's Prometheus metrics in a private registry:
// the sync outcomes the daemon reports, the webhook requests the server
// counts and the provider calls of an instrumented provider. Handler serves
// them on /metrics.
package metrics
