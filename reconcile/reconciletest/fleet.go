package reconciletest

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// DefaultVersion is the Kubernetes version of clusters built here.
const DefaultVersion = "v1.31.4+rke2r1"

// Fleet builds loaded fleets (schema.Fleet values) for tests, the way
// schema.Load would expand them, without YAML.
type Fleet struct {
	F *schema.Fleet
	// classes are the clusters' own classes, by cluster name, for Files.
	classes map[string]schema.Class
}

// NewFleet returns a fleet named acme with providers aws-eu (AWS) and dc1
// (vSphere), sizes small, medium and large, prices for all of them, and teams
// payments, trading and qa. With rancher it has a rancher block (openldap).
func NewFleet(rancher bool) *Fleet {
	f := &schema.Fleet{Spec: schema.FleetSpec{
		APIVersion: schema.APIVersion, Kind: schema.KindFleet, Name: "acme",
		Providers: []schema.Provider{
			{Name: "aws-eu", Type: schema.ProviderAWS, AWS: &schema.AWSProvider{Region: "eu-west-1", Subnets: []string{"subnet-1"}, Image: "ami-1"}},
			{Name: "dc1", Type: schema.ProviderVSphere, VSphere: &schema.VSphereProvider{Server: "https://vc", Datacenter: "DC1", Datastore: "ds", Network: "net", Folder: "fleetd", Template: "ubuntu"}},
		},
		Teams: []schema.Team{
			{Name: "payments", Groups: []string{"cn=payments,ou=groups,dc=acme,dc=example"}, BudgetMonthly: ptr(6000.0)},
			{Name: "qa", Groups: []string{"cn=qa,ou=groups,dc=acme,dc=example"}, BudgetMonthly: ptr(100.0)},
			{Name: "trading", Groups: []string{"cn=trading,ou=groups,dc=acme,dc=example", "cn=quants,ou=groups,dc=acme,dc=example"}},
		},
		Sizes: map[string]schema.Size{
			"small":  {AWS: &schema.AWSSize{InstanceType: "m6i.large"}, VSphere: &schema.VSphereSize{CPUs: 2, MemoryMiB: 8192, DiskGiB: 60}},
			"medium": {AWS: &schema.AWSSize{InstanceType: "m6i.xlarge"}, VSphere: &schema.VSphereSize{CPUs: 4, MemoryMiB: 16384, DiskGiB: 100}},
			"large":  {AWS: &schema.AWSSize{InstanceType: "m6i.2xlarge", DiskGiB: 200}, VSphere: &schema.VSphereSize{CPUs: 8, MemoryMiB: 32768, DiskGiB: 200}},
			// unpriced has no AWS price: its cost is unknown.
			"unpriced": {AWS: &schema.AWSSize{InstanceType: "x9.huge"}, VSphere: &schema.VSphereSize{CPUs: 16, MemoryMiB: 65536, DiskGiB: 200}},
		},
		Pricing: map[string]schema.Pricing{
			"aws-eu": {InstanceHourly: map[string]float64{"m6i.large": 0.107, "m6i.xlarge": 0.214, "m6i.2xlarge": 0.428}},
			"dc1":    {CPUHourly: ptr(0.012), MemoryGiBHourly: ptr(0.004)},
		},
	}}
	if rancher {
		f.Spec.Rancher = &schema.Rancher{URL: "https://rancher.test", Token: "env:RANCHER_TOKEN", AuthProvider: "openldap"} //nolint:gosec // a reference to a variable, not a secret
	}
	return &Fleet{F: f}
}

func ptr[T any](v T) *T { return &v }

// Pool describes a pool of a test cluster.
type Pool struct {
	Name     string
	Roles    []string
	Replicas int
	Size     string
}

// Cluster describes a test cluster.
type Cluster struct {
	Name, Team, Provider string
	// KubernetesVersion defaults to DefaultVersion.
	KubernetesVersion string
	// Pools default to Standard(1, 1).
	Pools []Pool
	// Access adds group bindings to the owning team's default one.
	Access    []schema.EffectiveAccess
	TTL       time.Duration
	Protected bool
	Paused    bool
}

// Standard returns a control pool (etcd, controlplane) and a workers pool.
func Standard(control, workers int) []Pool {
	return []Pool{
		{Name: "control", Roles: []string{schema.RoleEtcd, schema.RoleControlPlane}, Replicas: control, Size: "medium"},
		{Name: "workers", Roles: []string{schema.RoleWorker}, Replicas: workers, Size: "large"},
	}
}

// Add expands c the way the loader does and adds it to the fleet, keeping
// the clusters sorted by name. It replaces a cluster of the same name.
func (b *Fleet) Add(c Cluster) *schema.Cluster {
	sc := b.Build(c)
	if b.classes == nil {
		b.classes = map[string]schema.Class{}
	}
	b.classes[c.Name] = classOf(c)
	b.F.Clusters = slices.DeleteFunc(b.F.Clusters, func(x *schema.Cluster) bool { return x.Spec.Name == c.Name })
	b.F.Clusters = append(b.F.Clusters, sc)
	slices.SortFunc(b.F.Clusters, func(x, y *schema.Cluster) int { return strings.Compare(x.Spec.Name, y.Spec.Name) })
	return sc
}

// Remove deletes the named cluster from the fleet.
func (b *Fleet) Remove(name string) {
	b.F.Clusters = slices.DeleteFunc(b.F.Clusters, func(x *schema.Cluster) bool { return x.Spec.Name == name })
}

// Build expands c without adding it.
func (b *Fleet) Build(c Cluster) *schema.Cluster {
	s := &b.F.Spec
	if c.Provider == "" {
		c.Provider = "aws-eu"
	}
	if c.Team == "" {
		c.Team = "payments"
	}
	if c.KubernetesVersion == "" {
		c.KubernetesVersion = DefaultVersion
	}
	if c.Pools == nil {
		c.Pools = Standard(1, 1)
	}
	// Expand the cluster the way the loader does: a class of its own pools,
	// and its access entries beside the owning team's default binding.
	fs := *s
	fs.Classes = map[string]schema.Class{"test": classOf(c)}
	spec := schema.ClusterSpec{APIVersion: schema.APIVersion, Kind: schema.KindCluster, Name: c.Name, Team: c.Team,
		Provider: c.Provider, Class: "test", Protected: c.Protected, Paused: c.Paused}
	if c.TTL > 0 {
		spec.TTL = fmt.Sprintf("%dm", int(c.TTL/time.Minute))
	}
	for _, a := range c.Access {
		spec.Access = append(spec.Access, schema.Access{Group: a.Group, Role: a.Role})
	}
	eff := schema.Expand(&fs, &spec)
	return &schema.Cluster{Path: "clusters/" + c.Team + "/" + c.Name + ".yaml", Spec: spec, Effective: eff}
}

func classOf(c Cluster) schema.Class {
	class := schema.Class{KubernetesVersion: cmp.Or(c.KubernetesVersion, DefaultVersion)}
	pools := c.Pools
	if pools == nil {
		pools = Standard(1, 1)
	}
	for _, p := range pools {
		class.Pools = append(class.Pools, schema.Pool{Name: p.Name, Roles: p.Roles, Replicas: p.Replicas, Size: p.Size})
	}
	return class
}

// Files renders the fleet as the files of a fleet repo, by path: fleet.yaml,
// with a class of its own for each cluster (named after it), and one file
// per cluster. Loading them gives the fleet back. Pricing of providers the
// fleet does not have is left out.
func (b *Fleet) Files() (map[string][]byte, error) {
	spec := b.F.Spec
	spec.Classes = map[string]schema.Class{}
	files := map[string][]byte{}
	for _, c := range b.F.Clusters {
		class, ok := b.classes[c.Spec.Name]
		if !ok {
			return nil, fmt.Errorf("cluster %s was not added with Add", c.Spec.Name)
		}
		spec.Classes[c.Spec.Name] = class
		cs := c.Spec
		cs.Class = c.Spec.Name
		y, err := yaml.Marshal(cs)
		if err != nil {
			return nil, err
		}
		files[c.Path] = y
	}
	if len(spec.Classes) == 0 {
		spec.Classes["test"] = classOf(Cluster{})
	}
	spec.Pricing = maps.Clone(spec.Pricing)
	for name := range spec.Pricing {
		if !slices.ContainsFunc(spec.Providers, func(p schema.Provider) bool { return p.Name == name }) {
			delete(spec.Pricing, name)
		}
	}
	y, err := yaml.Marshal(spec)
	if err != nil {
		return nil, err
	}
	files[schema.FleetFile] = y
	return files, nil
}

// Machines returns the machines a cluster's pools would have once converged:
// n machines per pool with the pool's template, created at created, running.
// Add them to a World with AddMachine.
func Machines(c *schema.Cluster, created time.Time) []reconcile.Machine {
	var out []reconcile.Machine
	e := &c.Effective
	for i := range e.Pools {
		p := &e.Pools[i]
		t := reconcile.NewTemplate(e, p)
		for n := range p.Replicas {
			out = append(out, reconcile.Machine{
				Name: reconcile.MachineName(e.Name, p.Name, t.Hash, n), Provider: e.Provider, Cluster: e.Name, Team: e.Team,
				Pool: p.Name, TemplateHash: t.Hash, State: reconcile.MachineRunning, CreatedAt: created,
			})
		}
	}
	return out
}
