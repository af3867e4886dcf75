package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
)

// RancherCluster is one fleet cluster as Rancher knows it: its provisioning
// Cluster object, the access bindings fleetd made, its Cluster API machines and
// the readiness of its downstream nodes.
type RancherCluster struct {
	// Name is the fleet cluster name (the provisioning Cluster's name).
	Name string `json:"name"`
	// Team is the owning team recorded on the object when it was registered.
	Team string `json:"team,omitempty"`
	// ID is the management cluster ID (c-m-xxxxxxxx); empty until Rancher assigns it.
	ID    string `json:"id,omitempty"`
	Ready bool   `json:"ready"`
	// Provisioned reports that Rancher has provisioned the downstream
	// cluster at some time (its first machine registered): the provisioning
	// Cluster is ready or its Provisioned condition is True. Until then
	// Rancher answers the downstream API with ClusterUnavailable, which is
	// no fault; after it, the same answer means the cluster's agent is
	// disconnected.
	Provisioned bool `json:"provisioned,omitempty"`
	// NoNodesYet reports that the downstream cluster is not provisioned yet:
	// Rancher answered its API with ClusterUnavailable and the provisioning
	// Cluster was never provisioned. The cluster is registering; Nodes is nil
	// and removals that need node readiness wait, as for unknown readiness.
	NoNodesYet        bool   `json:"noNodesYet,omitempty"`
	Deleting          bool   `json:"deleting,omitempty"`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// Protected mirrors the cluster file's protected flag, recorded at
	// registration, so a cluster whose file is removed stays protected.
	Protected bool      `json:"protected,omitempty"`
	Bindings  []Binding `json:"bindings,omitempty"`
	// ForeignBindings are bindings on the cluster that fleetd did not make:
	// never changed, reported as drift.
	ForeignBindings []Binding `json:"foreignBindings,omitempty"`
	// Machines are the cluster's Rancher (Cluster API) machines.
	Machines []RancherMachine `json:"machines,omitempty"`
	// MachinesError says why Machines could not be listed; then nothing in
	// the cluster is changed this sync.
	MachinesError string `json:"machinesError,omitempty"`
	// Nodes is the readiness of the downstream nodes by node name; nil when
	// it could not be observed (NodesError says why), and then no machine with
	// a node is removed this sync.
	Nodes      map[string]bool `json:"nodes,omitempty"`
	NodesError string          `json:"nodesError,omitempty"`
}

// Ref returns the names by which a downstream cluster is reached.
func (c *RancherCluster) Ref() ClusterRef { return ClusterRef{Name: c.Name, ID: c.ID} }

// ClusterRef names a registered cluster: its fleet name and management cluster ID.
type ClusterRef struct {
	Name string
	ID   string
}

// Binding grants a Rancher principal a cluster role.
type Binding struct {
	// PrincipalID is a Rancher principal such as openldap_group://cn=x,dc=acme.
	PrincipalID string `json:"principal"`
	Role        string `json:"role"`
}

// Rancher machine phases (Cluster API). Only Deleting changes what the planner does.
const (
	RancherMachinePending      = "Pending"
	RancherMachineProvisioning = "Provisioning"
	RancherMachineRunning      = "Running"
	RancherMachineDeleting     = "Deleting"
	RancherMachineFailed       = "Failed"
)

// RancherMachine is one Cluster API Machine of a registered cluster.
type RancherMachine struct {
	// Name is the Machine object's name (custom-<12 hex>).
	Name string `json:"name"`
	// Node is the downstream node name, which fleetd sets to the machine name;
	// empty until Rancher records it.
	Node  string `json:"node,omitempty"`
	Phase string `json:"phase"`
}

// RancherMachineName returns the name Rancher gives the Machine of a node
// registered with CATTLE_ID=machine: custom- and the first 12 hex digits of the
// SHA-256 of the ID.
func RancherMachineName(machine string) string {
	sum := sha256.Sum256([]byte(machine))
	return "custom-" + hex.EncodeToString(sum[:6])
}

// RegisterSpec is what Rancher needs to know about a fleet cluster.
type RegisterSpec struct {
	Name              string            `json:"name"`
	Team              string            `json:"team"`
	KubernetesVersion string            `json:"kubernetesVersion"`
	Protected         bool              `json:"protected,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
}

// Registry is what the reconciler needs from Rancher. Every object it creates
// carries the fleet's label; objects without it are never listed, changed or
// deleted. Methods are keyed by the fleet cluster name.
type Registry interface {
	// Clusters lists the fleet's registered clusters with their bindings (only
	// those fleetd made), sorted by name. Machines and Nodes are left empty.
	// It changes nothing.
	Clusters(ctx context.Context) ([]RancherCluster, error)

	// Machines lists the Cluster API machines of a registered cluster, sorted
	// by name. It changes nothing.
	Machines(ctx context.Context, cluster string) ([]RancherMachine, error)

	// Register ensures the cluster is registered with spec: it creates the
	// provisioning Cluster when it is missing and updates its Kubernetes version
	// and marks when they differ, so it is idempotent. It returns the cluster as
	// it is afterwards; ID may still be empty.
	Register(ctx context.Context, spec RegisterSpec) (RancherCluster, error)

	// JoinCommand returns the node registration command for roles (a subset of
	// etcd, controlplane, worker): a shell pipeline run as root by cloud-init,
	// without sudo, ending with the role flags. It is a secret: it is put into
	// machine user data only, never into logs, plans, status or errors. It
	// returns a *WaitError while Rancher has not issued the token yet. It
	// changes nothing.
	JoinCommand(ctx context.Context, cluster string, roles []string) (string, error)

	// Bind grants a binding on the cluster. A binding that exists is a
	// success, so Bind is idempotent. It returns a *WaitError while the
	// cluster has no management ID yet.
	Bind(ctx context.Context, cluster string, b Binding) error

	// Unbind removes a binding fleetd made. A binding that is gone is a
	// success, so Unbind is idempotent.
	Unbind(ctx context.Context, cluster string, b Binding) error

	// DeleteMachine deletes a Cluster API machine of the cluster by name; Rancher
	// then removes its etcd member and node. With excludeDrain (the VM is gone)
	// it first marks the machine so Cluster API skips draining. A machine that is
	// gone or already deleting is a success, so DeleteMachine is idempotent.
	DeleteMachine(ctx context.Context, cluster, machine string, excludeDrain bool) error

	// Unregister deletes the provisioning Cluster; Rancher then deletes the
	// management cluster and its machines. A cluster that is gone or already
	// deleting is a success, so Unregister is idempotent.
	Unregister(ctx context.Context, cluster string) error
}

// Nodes is what the reconciler needs from downstream clusters.
type Nodes interface {
	// Ready returns the readiness of the cluster's nodes by node name. When
	// Rancher reports the downstream cluster unavailable (no agent of it is
	// connected), the error wraps an *UnavailableError: Observe then decides
	// from the provisioning Cluster whether the cluster has no nodes yet or
	// failed. It changes nothing.
	Ready(ctx context.Context, cluster ClusterRef) (map[string]bool, error)

	// Drain cordons the node and evicts its pods, respecting
	// PodDisruptionBudgets, within a bounded time. A node that is already
	// drained, or gone, is a success, so Drain is idempotent. When a
	// PodDisruptionBudget blocks an eviction it returns a *WaitError and never
	// forces the eviction.
	Drain(ctx context.Context, cluster ClusterRef, node string) error
}

// World is everything a sync observes and changes. Registry and Nodes are nil
// for a fleet without a rancher block: machines are then created and deleted
// directly.
type World struct {
	// Providers by their name in fleet.yaml.
	Providers map[string]Provider
	Registry  Registry
	Nodes     Nodes
}
