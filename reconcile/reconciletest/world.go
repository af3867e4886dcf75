package reconciletest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

type vm struct {
	m        reconcile.Machine
	userData []byte
}

type rcluster struct {
	rc       reconcile.RancherCluster
	token    string
	machines map[string]*reconcile.RancherMachine
	nodes    map[string]bool
	drained  map[string]bool
}

// World is an in-memory world of machines in providers, Rancher clusters with
// their machines and bindings, and downstream nodes. Its fakes (Provider,
// Registry, Nodes) share it, log every call in order and consult the
// installed faults. Changes take effect at once; what takes time in the real
// world (booting, joining, Rancher deleting) happens on Settle.
type World struct {
	mu  sync.Mutex
	now time.Time
	// faulty logs the fakes' calls and injects their faults.
	faulty Faulty
	// Latency delays every call.
	Latency time.Duration

	vms      map[string]map[string]*vm // provider → ID → VM
	clusters map[string]*rcluster
	nextID   int
	// Created counts machines ever created, by name.
	created map[string]int
	// JoinOnSettle makes running machines join their cluster on Settle
	// (default true via NewWorld).
	JoinOnSettle bool
	// NodesReadyOnJoin makes a joined node ready at once (default true).
	NodesReadyOnJoin bool
	// HealNodes makes every not-ready node of a running machine ready on
	// Settle (default true).
	HealNodes bool
	// DeferClusterID leaves a new Rancher cluster without an ID until Settle.
	DeferClusterID bool
}

// NewWorld returns an empty world whose clock starts at now.
func NewWorld(now time.Time) *World {
	return &World{now: now, vms: map[string]map[string]*vm{}, clusters: map[string]*rcluster{},
		created: map[string]int{}, JoinOnSettle: true, NodesReadyOnJoin: true, HealNodes: true}
}

// Now returns the world's clock.
func (w *World) Now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

// Advance moves the world's clock.
func (w *World) Advance(d time.Duration) {
	w.mu.Lock()
	w.now = w.now.Add(d)
	w.mu.Unlock()
}

// Inject installs a fault; every installed fault is asked about every call.
func (w *World) Inject(f Fault) { w.faulty.Inject(f) }

// ClearFaults removes every fault.
func (w *World) ClearFaults() { w.faulty.ClearFaults() }

// Calls returns the call log.
func (w *World) Calls() []Call { return w.faulty.Calls() }

// ResetCalls empties the call log.
func (w *World) ResetCalls() { w.faulty.ResetCalls() }

// begin delays a call by the world's latency, then logs it and asks the
// faults about it (see Faulty).
func (w *World) begin(ctx context.Context, op, cluster string, args ...string) (before, after error) {
	if w.Latency > 0 {
		t := time.NewTimer(w.Latency)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return w.faulty.begin(ctx, op, cluster, args...)
}

// World returns a reconcile.World with a fake provider for each name, and a
// fake Registry and Nodes when rancher is true.
func (w *World) World(rancher bool, providers ...string) reconcile.World {
	rw := reconcile.World{Providers: map[string]reconcile.Provider{}}
	for _, p := range providers {
		rw.Providers[p] = &Provider{W: w, ProviderName: p}
	}
	if rancher {
		rw.Registry = &Registry{W: w}
		rw.Nodes = &Nodes{W: w}
	}
	return rw
}

// AddMachine puts a machine into the world directly, as if fleetd had made
// it earlier. It returns the machine with its ID.
func (w *World) AddMachine(m reconcile.Machine) reconcile.Machine {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m.ID == "" {
		w.nextID++
		m.ID = fmt.Sprintf("%s-%05d", m.Provider, w.nextID)
	}
	if m.State == "" {
		m.State = reconcile.MachineRunning
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = w.now
	}
	if w.vms[m.Provider] == nil {
		w.vms[m.Provider] = map[string]*vm{}
	}
	w.vms[m.Provider][m.ID] = &vm{m: m}
	return m
}

// Launched sets when the machines of cluster were launched, as a provider
// reports it: a temporary cluster's ttl never runs out before its first
// machine has lived that long.
func (w *World) Launched(cluster string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, byID := range w.vms {
		for _, v := range byID {
			if v.m.Cluster == cluster {
				v.m.CreatedAt = at
			}
		}
	}
}

// RemoveMachine deletes a VM out of band, leaving Rancher as it is.
func (w *World) RemoveMachine(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, byID := range w.vms {
		for id, v := range byID {
			if v.m.Name == name {
				delete(byID, id)
			}
		}
	}
}

// AddCluster registers a cluster directly, with a management ID.
func (w *World) AddCluster(rc reconcile.RancherCluster) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if rc.ID == "" {
		w.nextID++
		rc.ID = fmt.Sprintf("c-m-%05d", w.nextID)
	}
	rc.Provisioned = rc.Provisioned || rc.Ready
	c := &rcluster{rc: rc, token: "SECRET-TOKEN-" + rc.Name, machines: map[string]*reconcile.RancherMachine{}, nodes: map[string]bool{}, drained: map[string]bool{}}
	for i := range rc.Machines {
		m := rc.Machines[i]
		c.machines[m.Name] = &m
	}
	for n, r := range rc.Nodes {
		c.nodes[n] = r
	}
	c.rc.Machines, c.rc.Nodes = nil, nil
	w.clusters[rc.Name] = c
}

// Join registers a machine's node with its cluster at once (as Settle would).
func (w *World) Join(cluster, machine string, ready bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.clusters[cluster]
	if c == nil {
		return
	}
	name := reconcile.RancherMachineName(machine)
	c.machines[name] = &reconcile.RancherMachine{Name: name, Node: machine, Phase: reconcile.RancherMachineRunning}
	c.nodes[machine] = ready
	// A machine that registered provisions its cluster, for good.
	c.rc.Ready, c.rc.Provisioned = true, true
}

// SetNodeReady sets a node's readiness.
func (w *World) SetNodeReady(cluster, node string, ready bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.clusters[cluster]; c != nil {
		c.nodes[node] = ready
	}
}

// Machines returns every machine in every provider, sorted by name and ID.
func (w *World) Machines() []reconcile.Machine {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.machinesLocked("")
}

func (w *World) machinesLocked(provider string) []reconcile.Machine {
	var out []reconcile.Machine
	for p, byID := range w.vms {
		if provider != "" && p != provider {
			continue
		}
		for _, v := range byID {
			out = append(out, v.m)
		}
	}
	slices.SortFunc(out, func(a, b reconcile.Machine) int {
		return strings.Compare(a.Name+"\x00"+a.ID, b.Name+"\x00"+b.ID)
	})
	return out
}

// UserData returns the user data a machine was created with.
func (w *World) UserData(name string) []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, byID := range w.vms {
		for _, v := range byID {
			if v.m.Name == name {
				return v.userData
			}
		}
	}
	return nil
}

// RancherClusters returns the registered clusters with their machines and
// nodes, sorted by name.
func (w *World) RancherClusters() []reconcile.RancherCluster {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []reconcile.RancherCluster
	for _, name := range slices.Sorted(maps.Keys(w.clusters)) {
		c := w.clusters[name]
		rc := c.snapshot()
		rc.Machines = c.machineList()
		rc.Nodes = cloneNodes(c.nodes)
		out = append(out, rc)
	}
	return out
}

// Token returns the registration token of a cluster, to check it leaks nowhere.
func (w *World) Token(cluster string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.clusters[cluster]; c != nil {
		return c.token
	}
	return ""
}

// Created returns how often a machine of each name was created.
func (w *World) Created() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.created))
	for k, v := range w.created {
		out[k] = v
	}
	return out
}

// Duplicates returns the names held by more than one machine.
func (w *World) Duplicates() []string {
	seen := map[string]int{}
	for _, m := range w.Machines() {
		seen[m.Name]++
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(seen)) {
		if seen[name] > 1 {
			out = append(out, name)
		}
	}
	return out
}

// Settle lets time do its work once: deleted VMs, Rancher machines and
// clusters disappear, pending machines start, and running machines created
// with a cluster's node command join it (when JoinOnSettle).
func (w *World) Settle() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, byID := range w.vms {
		for id, v := range byID {
			switch v.m.State {
			case reconcile.MachineDeleting:
				delete(byID, id)
			case reconcile.MachinePending:
				v.m.State = reconcile.MachineRunning
			}
		}
	}
	for name, c := range w.clusters {
		if c.rc.Deleting {
			delete(w.clusters, name)
			continue
		}
		for rn, rm := range c.machines {
			if rm.Phase == reconcile.RancherMachineDeleting {
				delete(c.machines, rn)
				delete(c.nodes, rm.Node)
				delete(c.drained, rm.Node)
			}
		}
		if c.rc.ID == "" {
			w.nextID++
			c.rc.ID = fmt.Sprintf("c-m-%05d", w.nextID)
		}
	}
	if w.JoinOnSettle {
		for _, byID := range w.vms {
			for _, v := range byID {
				if v.m.State != reconcile.MachineRunning || len(v.userData) == 0 {
					continue
				}
				c := w.clusters[v.m.Cluster]
				if c == nil || c.rc.Deleting || !strings.Contains(string(v.userData), "--token "+c.token+" ") {
					continue
				}
				name := reconcile.RancherMachineName(v.m.Name)
				if _, ok := c.machines[name]; ok {
					continue
				}
				c.machines[name] = &reconcile.RancherMachine{Name: name, Node: v.m.Name, Phase: reconcile.RancherMachineRunning}
				c.nodes[v.m.Name] = w.NodesReadyOnJoin
			}
		}
	}
	if w.HealNodes {
		for _, byID := range w.vms {
			for _, v := range byID {
				if c := w.clusters[v.m.Cluster]; c != nil && v.m.State == reconcile.MachineRunning {
					if _, joined := c.nodes[v.m.Name]; joined {
						c.nodes[v.m.Name] = true
					}
				}
			}
		}
	}
	for _, c := range w.clusters {
		c.rc.Ready = false
		for _, r := range c.nodes {
			if r {
				c.rc.Ready, c.rc.Provisioned = true, true
			}
		}
	}
}

func (c *rcluster) snapshot() reconcile.RancherCluster {
	rc := c.rc
	rc.Bindings = slices.Clone(c.rc.Bindings)
	slices.SortFunc(rc.Bindings, func(a, b reconcile.Binding) int {
		return strings.Compare(a.PrincipalID+"\x00"+a.Role, b.PrincipalID+"\x00"+b.Role)
	})
	return rc
}

func (c *rcluster) machineList() []reconcile.RancherMachine {
	out := make([]reconcile.RancherMachine, 0, len(c.machines))
	for _, name := range slices.Sorted(maps.Keys(c.machines)) {
		out = append(out, *c.machines[name])
	}
	return out
}

// cloneNodes copies node readiness; never nil, since a nil map means
// "not observed".
func cloneNodes(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// ClusterNames lists, sorted, the clusters the world holds machines or a
// Rancher registration of.
func (w *World) ClusterNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	for _, byID := range w.vms {
		for _, v := range byID {
			seen[v.m.Cluster] = true
		}
	}
	for _, c := range w.clusters {
		seen[c.rc.Name] = true
	}
	return slices.Sorted(maps.Keys(seen))
}
