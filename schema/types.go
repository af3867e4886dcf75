package schema

import "time"

// APIVersion is the only apiVersion this version of fleetd reads.
const APIVersion = "fleetd.io/v1alpha1"

// Kinds of fleet repo documents.
const (
	KindFleet   = "Fleet"
	KindCluster = "Cluster"
)

// Provider types.
const (
	ProviderAWS     = "aws"
	ProviderVSphere = "vsphere"
)

// Node roles of a pool.
const (
	RoleEtcd         = "etcd"
	RoleControlPlane = "controlplane"
	RoleWorker       = "worker"
)

// DefaultRancherNamespace is where cluster objects live when fleet.yaml names none.
const DefaultRancherNamespace = "fleet-default"

// DefaultOwnerRole is the Rancher cluster role the owning team gets unless its
// cluster file binds the team to another role.
const DefaultOwnerRole = "cluster-member"

// Limits on numbers in fleet files. They keep every value the loader accepts
// finite through arithmetic: a duration fits time.Duration, a cost per month
// (hourly price × machines × 730 hours) stays far below float64's range, so
// JSON output and status files always encode and read back.
const (
	// MaxTTLDays is the longest ttl: ten years (3650d, 87600h, 5256000m).
	MaxTTLDays = 3650
	// MaxHourlyPrice bounds instanceHourly, cpuHourly and memoryGiBHourly.
	MaxHourlyPrice = 1e6
	// MaxBudgetMonthly bounds a team's budgetMonthly.
	MaxBudgetMonthly = 1e12
)

// BuiltinClusterRoles are the cluster role templates Rancher ships; an access
// entry's role is one of them or one of fleet.yaml's clusterRoles.
var BuiltinClusterRoles = []string{
	"backups-manage", "cluster-member", "cluster-owner", "clustercatalogs-manage", "clustercatalogs-view",
	"clusterroletemplatebindings-manage", "clusterroletemplatebindings-view", "clusterscans-manage",
	"navlinks-manage", "nodes-manage", "nodes-view", "projects-create", "projects-view", "storage-manage",
}

// FleetSpec is the content of fleet.yaml (kind Fleet).
type FleetSpec struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Name       string           `json:"name"`
	Rancher    *Rancher         `json:"rancher,omitempty"`
	Providers  []Provider       `json:"providers"`
	Teams      []Team           `json:"teams"`
	Sizes      map[string]Size  `json:"sizes"`
	Classes    map[string]Class `json:"classes"`
	// ClusterRoles are custom Rancher cluster role templates that access
	// entries may use besides Rancher's built-in ones.
	ClusterRoles []string           `json:"clusterRoles,omitempty"`
	Pricing      map[string]Pricing `json:"pricing,omitempty"`
	Policy       Policy             `json:"policy,omitempty"`
	Status       StatusConfig       `json:"status,omitempty"`
}

// Rancher says how fleetd reaches Rancher. Without it clusters get machines
// but are not registered anywhere.
type Rancher struct {
	URL          string `json:"url"`
	Token        string `json:"token"` // a secret reference: env:NAME or file:/abs/path
	AuthProvider string `json:"authProvider"`
	Namespace    string `json:"namespace,omitempty"`
	CAFile       string `json:"caFile,omitempty"`
}

// Provider is one named infrastructure target.
type Provider struct {
	Name    string           `json:"name"`
	Type    string           `json:"type"`
	AWS     *AWSProvider     `json:"aws,omitempty"`
	VSphere *VSphereProvider `json:"vsphere,omitempty"`
}

// AWSProvider configures an EC2 region.
type AWSProvider struct {
	Region          string   `json:"region"`
	Subnets         []string `json:"subnets"`
	SecurityGroups  []string `json:"securityGroups,omitempty"`
	InstanceProfile string   `json:"instanceProfile,omitempty"`
	Image           string   `json:"image,omitempty"`
	Credentials     string   `json:"credentials,omitempty"` // env:NAME naming an AWS profile
}

// VSphereProvider configures a vCenter.
type VSphereProvider struct {
	Server         string `json:"server"`
	Credentials    string `json:"credentials"` // env:NAME or file:/path holding user:password
	Datacenter     string `json:"datacenter"`
	ComputeCluster string `json:"computeCluster,omitempty"`
	ResourcePool   string `json:"resourcePool,omitempty"`
	Datastore      string `json:"datastore"`
	Network        string `json:"network"`
	Folder         string `json:"folder"`
	Template       string `json:"template"`
	Insecure       bool   `json:"insecure,omitempty"`
	CAFile         string `json:"caFile,omitempty"`
}

// Team is a group of people owning clusters.
type Team struct {
	Name          string   `json:"name"`
	Groups        []string `json:"groups,omitempty"`
	BudgetMonthly *float64 `json:"budgetMonthly,omitempty"`
}

// Size is a provider-neutral machine size mapped per provider type.
type Size struct {
	AWS     *AWSSize     `json:"aws,omitempty"`
	VSphere *VSphereSize `json:"vsphere,omitempty"`
}

// AWSSize is a size on AWS.
type AWSSize struct {
	InstanceType string `json:"instanceType"`
	Image        string `json:"image,omitempty"`
	DiskGiB      int    `json:"diskGiB,omitempty"`
}

// VSphereSize is a size on vSphere.
type VSphereSize struct {
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memoryMiB"`
	DiskGiB   int    `json:"diskGiB"`
	Template  string `json:"template,omitempty"`
}

// Class is a reusable cluster shape.
type Class struct {
	KubernetesVersion string `json:"kubernetesVersion"`
	Pools             []Pool `json:"pools"`
}

// Pool is a node pool of a class.
type Pool struct {
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
	Replicas int      `json:"replicas"`
	Size     string   `json:"size"`
}

// Pricing is the cost model of one provider.
type Pricing struct {
	InstanceHourly  map[string]float64 `json:"instanceHourly,omitempty"`
	CPUHourly       *float64           `json:"cpuHourly,omitempty"`
	MemoryGiBHourly *float64           `json:"memoryGiBHourly,omitempty"`
}

// Policy holds the safety limits.
type Policy struct {
	MaxDecommissionsPerSync  *int   `json:"maxDecommissionsPerSync,omitempty"`
	PruneGuardPercent        *int   `json:"pruneGuardPercent,omitempty"`
	MaxMachineChangesPerSync *int   `json:"maxMachineChangesPerSync,omitempty"`
	ConfirmPrune             string `json:"confirmPrune,omitempty"`
}

// Policy defaults (DESIGN.md "Safety policy").
const (
	DefaultMaxDecommissionsPerSync  = 1
	DefaultPruneGuardPercent        = 30
	DefaultMaxMachineChangesPerSync = 50
)

// Limits are the policy with defaults applied.
type Limits struct {
	MaxDecommissionsPerSync  int
	PruneGuardPercent        int
	MaxMachineChangesPerSync int
	ConfirmPrune             string
}

// Limits returns the policy with every default applied.
// StatusBranch returns the branch status commits go to: status.branch, or
// DefaultStatusBranch. A nil fleet (fleet.yaml did not load) has the default.
func (f *Fleet) StatusBranch() string {
	if f != nil && f.Spec.Status.Branch != "" {
		return f.Spec.Status.Branch
	}
	return DefaultStatusBranch
}

func (p Policy) Limits() Limits {
	l := Limits{
		MaxDecommissionsPerSync:  DefaultMaxDecommissionsPerSync,
		PruneGuardPercent:        DefaultPruneGuardPercent,
		MaxMachineChangesPerSync: DefaultMaxMachineChangesPerSync,
		ConfirmPrune:             p.ConfirmPrune,
	}
	if p.MaxDecommissionsPerSync != nil {
		l.MaxDecommissionsPerSync = *p.MaxDecommissionsPerSync
	}
	if p.PruneGuardPercent != nil {
		l.PruneGuardPercent = *p.PruneGuardPercent
	}
	if p.MaxMachineChangesPerSync != nil {
		l.MaxMachineChangesPerSync = *p.MaxMachineChangesPerSync
	}
	return l
}

// StatusConfig says where and as whom status is written.
type StatusConfig struct {
	Branch string  `json:"branch,omitempty"`
	Author *Author `json:"author,omitempty"`
}

// Author is a git identity.
type Author struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Status defaults.
const (
	DefaultStatusBranch = "fleet-status"
	DefaultAuthorName   = "fleetd"
	DefaultAuthorEmail  = "fleetd@localhost"
)

// ClusterSpec is the content of a cluster file (kind Cluster).
type ClusterSpec struct {
	APIVersion        string            `json:"apiVersion"`
	Kind              string            `json:"kind"`
	Name              string            `json:"name"`
	Team              string            `json:"team"`
	Provider          string            `json:"provider"`
	Class             string            `json:"class"`
	KubernetesVersion string            `json:"kubernetesVersion,omitempty"`
	Pools             []PoolOverride    `json:"pools,omitempty"`
	Access            []Access          `json:"access,omitempty"`
	TTL               string            `json:"ttl,omitempty"`
	Protected         bool              `json:"protected,omitempty"`
	Paused            bool              `json:"paused,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
}

// PoolOverride changes a class pool for one cluster.
type PoolOverride struct {
	Name     string `json:"name"`
	Replicas *int   `json:"replicas,omitempty"`
	Size     string `json:"size,omitempty"`
}

// Access binds an LDAP group, or every group of a team, to a Rancher cluster role.
type Access struct {
	Group string `json:"group,omitempty"`
	Team  string `json:"team,omitempty"`
	Role  string `json:"role"`
}

// Fleet is a loaded fleet repo: fleet.yaml and the clusters that loaded.
type Fleet struct {
	Spec FleetSpec
	// Clusters are the valid clusters with their effective specs, sorted by name.
	Clusters []*Cluster
	// Rejected are cluster files that did not load, sorted by path. The
	// reconciler holds such a cluster at its last valid version.
	Rejected []RejectedFile
}

// RejectedFile is a cluster file that did not load.
type RejectedFile struct {
	Path string
	// Name and Team are what the file declares, when that much could be read.
	Name, Team  string
	Diagnostics Diagnostics
}

// Cluster is one valid cluster file and the spec it takes effect as.
type Cluster struct {
	Path      string
	Spec      ClusterSpec
	Effective EffectiveCluster
}

// EffectiveCluster is a cluster's class with its overrides applied and every
// reference resolved: what the reconciler converges to.
type EffectiveCluster struct {
	Name              string            `json:"name"`
	Team              string            `json:"team"`
	Provider          string            `json:"provider"`
	ProviderType      string            `json:"providerType"`
	Class             string            `json:"class"`
	KubernetesVersion string            `json:"kubernetesVersion"`
	Pools             []EffectivePool   `json:"pools"`
	Access            []EffectiveAccess `json:"access"`
	TTL               time.Duration     `json:"-"`
	TTLText           string            `json:"ttl,omitempty"`
	Protected         bool              `json:"protected,omitempty"`
	Paused            bool              `json:"paused,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
}

// EffectivePool is one pool of an effective cluster.
type EffectivePool struct {
	Name     string      `json:"name"`
	Roles    []string    `json:"roles"`
	Replicas int         `json:"replicas"`
	SizeName string      `json:"size"`
	Machine  MachineSize `json:"machine"`
}

// HasRole reports whether the pool's machines carry role.
func (p EffectivePool) HasRole(role string) bool {
	for _, r := range p.Roles {
		if r == role {
			return true
		}
	}
	return false
}

// MachineSize is a size resolved for one provider: only the fields of that
// provider's type are set, with the provider's default image or template
// filled in when the size does not override it.
type MachineSize struct {
	InstanceType string `json:"instanceType,omitempty"`
	Image        string `json:"image,omitempty"`
	CPUs         int    `json:"cpus,omitempty"`
	MemoryMiB    int    `json:"memoryMiB,omitempty"`
	DiskGiB      int    `json:"diskGiB,omitempty"`
	Template     string `json:"template,omitempty"`
}

// EffectiveAccess is one LDAP group bound to a role on a cluster.
type EffectiveAccess struct {
	Group string `json:"group"`
	Role  string `json:"role"`
	// Team is set when the binding came from a team (the owner or a team entry).
	Team string `json:"team,omitempty"`
}
