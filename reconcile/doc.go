// Package reconcile converges the world to the fleet repo in five steps:
// observe, plan (a pure function), gate, apply and report. It declares the small
// interfaces it needs from providers, Rancher and downstream clusters, and never
// imports a provider, git or an SDK.
package reconcile
