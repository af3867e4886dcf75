// Package providertest is the conformance suite of reconcile.Provider: every
// provider runs it against its real or simulated endpoint.
package providertest
