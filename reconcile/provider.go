package reconcile

import (
	"context"
	"time"

	"github.com/fleetd/fleetd/schema"
)

// MachineState is the life-cycle state of a machine as its provider reports it.
type MachineState string

// Machine states. Providers map their own states onto these.
const (
	MachinePending  MachineState = "pending"  // created, not yet running (booting, cloning)
	MachineRunning  MachineState = "running"  // powered on
	MachineStopped  MachineState = "stopped"  // exists but powered off
	MachineDeleting MachineState = "deleting" // being terminated or destroyed
)

// Machine is one VM or instance that the fleet owns, as observed in a provider.
type Machine struct {
	// ID is the provider's identifier (an EC2 instance ID, a vSphere managed object ID).
	ID string `json:"id"`
	// Name is the machine name fleetd chose: <cluster>-<pool>-<hash5>-<n>.
	Name string `json:"name"`
	// Provider is the provider's name in fleet.yaml.
	Provider     string       `json:"provider"`
	Cluster      string       `json:"cluster"`
	Team         string       `json:"team"`
	Pool         string       `json:"pool"`
	TemplateHash string       `json:"templateHash"`
	State        MachineState `json:"state"`
	Address      string       `json:"address,omitempty"`
	CreatedAt    time.Time    `json:"createdAt"`
}

// MachineSpec asks a provider for one machine.
type MachineSpec struct {
	Name         string
	Cluster      string
	Team         string
	Pool         string
	TemplateHash string
	// Size is the pool's size resolved for this provider's type.
	Size schema.MachineSize
	// UserData is the cloud-init document the machine boots with. It holds the
	// Rancher registration token: a provider passes it to the machine and never
	// logs it, stores it elsewhere or puts it into an error.
	UserData []byte
}

// Provider is what the reconciler needs from an infrastructure provider. One
// Provider serves one entry of fleet.yaml's providers for one fleet; everything
// it creates carries the fleet's ownership marks, and it never lists, changes or
// deletes anything without them.
type Provider interface {
	// Name returns the provider's name in fleet.yaml.
	Name() string

	// List returns every machine the fleet owns in this provider, in one batched
	// query for the whole fleet, sorted by name. Machines without the fleet's
	// marks are never returned.
	List(ctx context.Context) ([]Machine, error)

	// Create creates the machines and starts them. It is idempotent by name: a
	// machine of that name that the fleet already owns is returned as it is, so a
	// create retried after a crash makes no twin. It returns the machines that
	// exist afterwards, in the order of specs, and on a partial failure the
	// machines that were created together with the joined errors.
	Create(ctx context.Context, specs []MachineSpec) ([]Machine, error)

	// Delete removes the machines with the given IDs. A machine that is already
	// gone is a success, so Delete is idempotent. A machine without the fleet's
	// marks is never deleted: asking for one is an error.
	Delete(ctx context.Context, ids []string) error
}
