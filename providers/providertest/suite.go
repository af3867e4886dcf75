package providertest

import (
	"testing"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// Harness is what the suite needs from the provider under test and its endpoint.
type Harness struct {
	// NewProvider returns a provider for the fleet named fleet, talking to the
	// test endpoint. The suite calls it more than once (a second fleet name
	// plays a foreign fleet).
	NewProvider func(t *testing.T, fleet string) reconcile.Provider
	// CreateForeign makes a machine outside fleetd, without any ownership mark,
	// directly at the endpoint, and returns its provider ID.
	CreateForeign func(t *testing.T, name string) string
	// Size is a valid size for this provider.
	Size schema.MachineSize
	// Many is the number of machines of the paging test (default 1200); a
	// negative value skips it.
	Many int
}

// Run runs the conformance suite against h. Each case uses cluster names of
// its own, so the cases share one endpoint.
func Run(t *testing.T, h Harness) {
	t.Helper()
	t.Skip("providertest: suite not written yet")
}
