package aws_test

import (
	"testing"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/providers/providertest"
	"github.com/fleetd/fleetd/reconcile"
)

// TestConformance runs the provider conformance suite with the real SDK
// against the EC2 Query protocol server.
func TestConformance(t *testing.T) {
	srv := newServer(t)
	providertest.Run(t, providertest.Harness{
		NewProvider: func(t *testing.T, fleet string) reconcile.Provider {
			return newProvider(t, srv, fleet)
		},
		CreateForeign: func(_ *testing.T, _ string) string {
			// Launched by someone else: no tags at all.
			return srv.Launch(ec2test.LaunchSpec{ImageID: testImage, InstanceType: "t3.micro", SubnetID: testSubnets[0]})
		},
		ForeignExists: func(_ *testing.T, id string) bool {
			in, ok := srv.Instance(id)
			return ok && in.State != ec2test.StateTerminated
		},
		Size: testSize,
	})
}
