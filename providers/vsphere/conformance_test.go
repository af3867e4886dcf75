package vsphere

import (
	"strings"
	"testing"

	"github.com/fleetd/fleetd/providers/providertest"
	"github.com/fleetd/fleetd/reconcile"
)

// TestConformance runs the provider conformance suite against the simulator
// (VPX model) over HTTPS with a verified certificate.
func TestConformance(t *testing.T) {
	s := newSim(t, vcsimserverOptions())
	many, page := providertest.DefaultMany, 0
	if testing.Short() {
		many, page = 300, 100
	}
	providertest.Run(t, providertest.Harness{
		NewProvider: func(t *testing.T, fleet string) reconcile.Provider {
			cfg := s.config(fleet)
			cfg.PageSize = page
			cfg.MaxInFlight = 16
			return s.provider(t, cfg)
		},
		CreateForeign: func(t *testing.T, name string) string {
			return s.createForeign(t, s.adminFolder(t, baseFolder), name).Value
		},
		ForeignExists: func(t *testing.T, id string) bool { return s.vm(t, id) != nil },
		Seed:          s.seed,
		Size:          testSize,
		Many:          many,
	})
	if logs := s.logs.String(); strings.Contains(logs, "providertest-secret-token") || strings.Contains(logs, "s3cret-pass") {
		t.Errorf("logs reveal user data or the password")
	}
}
