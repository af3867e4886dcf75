// Package providers is the home of fleetd's infrastructure providers: one
// package per provider type implementing reconcile.Provider, and providertest,
// the conformance suite every provider passes.
package providers
