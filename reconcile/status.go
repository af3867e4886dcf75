package reconcile

import (
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetd/fleetd/schema"
)

// StatusDir is the folder of the fleet repo that fleetd writes.
const StatusDir = "status"

// SummaryFile is the fleet overview in StatusDir.
const SummaryFile = "SUMMARY.md"

// StatusKind is the kind of a status file.
const StatusKind = "ClusterStatus"

// Phase is where a cluster is in its life.
type Phase string

// Phases.
const (
	PhaseProvisioning    Phase = "Provisioning"
	PhaseReady           Phase = "Ready"
	PhaseScaling         Phase = "Scaling"
	PhaseUpdating        Phase = "Updating"
	PhaseDegraded        Phase = "Degraded"
	PhaseBlocked         Phase = "Blocked"
	PhaseExpiring        Phase = "Expiring"
	PhaseDecommissioning Phase = "Decommissioning"
	PhaseDecommissioned  Phase = "Decommissioned"
	PhaseFailed          Phase = "Failed"
)

// Phases lists every phase, in the order a cluster's life meets them.
var Phases = []Phase{PhaseProvisioning, PhaseScaling, PhaseUpdating, PhaseReady, PhaseDegraded, PhaseBlocked,
	PhaseExpiring, PhaseDecommissioning, PhaseDecommissioned, PhaseFailed}

// ExpiringWindow is how long before its expiry a temporary cluster shows
// the phase Expiring.
const ExpiringWindow = time.Hour

// ClusterStatus is the content of status/<team>/<cluster>.yaml: what fleetd
// observed of one cluster and what it is doing about it. It holds no time that
// moves on every sync, so the file changes only when a fact does.
type ClusterStatus struct {
	APIVersion        string         `json:"apiVersion"`
	Kind              string         `json:"kind"`
	Cluster           string         `json:"cluster"`
	Team              string         `json:"team"`
	Provider          string         `json:"provider,omitempty"`
	SpecCommit        string         `json:"specCommit,omitempty"`
	Phase             Phase          `json:"phase"`
	Message           string         `json:"message,omitempty"`
	KubernetesVersion string         `json:"kubernetesVersion,omitempty"`
	Protected         bool           `json:"protected,omitempty"`
	Paused            bool           `json:"paused,omitempty"`
	ExpiresAt         *time.Time     `json:"expiresAt,omitempty"`
	Cost              *Cost          `json:"cost,omitempty"`
	Rancher           *RancherStatus `json:"rancher,omitempty"`
	Pools             []PoolStatus   `json:"pools,omitempty"`
	Conditions        []Condition    `json:"conditions,omitempty"`
	Blocked           []string       `json:"blocked,omitempty"`
	Waiting           []string       `json:"waiting,omitempty"`
	LastError         string         `json:"lastError,omitempty"`
	Diagnostics       []string       `json:"diagnostics,omitempty"`
	// Templates describe every template the cluster's machines and pools use.
	Templates []Template `json:"templates,omitempty"`
}

// RancherStatus is the cluster as Rancher has it.
type RancherStatus struct {
	ClusterID         string    `json:"clusterID,omitempty"`
	Ready             bool      `json:"ready"`
	Deleting          bool      `json:"deleting,omitempty"`
	KubernetesVersion string    `json:"kubernetesVersion,omitempty"`
	Bindings          []Binding `json:"bindings,omitempty"`
	// OtherMachines are Rancher machines without a machine of the cluster:
	// those whose VM is gone and those fleetd did not create.
	OtherMachines []RancherMachine `json:"otherMachines,omitempty"`
}

// PoolStatus is one node pool: desired, existing and ready machines.
type PoolStatus struct {
	Name     string          `json:"name"`
	Roles    []string        `json:"roles,omitempty"`
	Size     string          `json:"size,omitempty"`
	Template string          `json:"template,omitempty"`
	Desired  int             `json:"desired"`
	Existing int             `json:"existing"`
	Ready    int             `json:"ready"`
	Machines []MachineStatus `json:"machines,omitempty"`
}

// MachineStatus is one machine of a pool.
type MachineStatus struct {
	Name           string       `json:"name"`
	ID             string       `json:"id"`
	Provider       string       `json:"provider"`
	State          MachineState `json:"state"`
	Ready          bool         `json:"ready"`
	Address        string       `json:"address,omitempty"`
	Template       string       `json:"template"`
	CreatedAt      time.Time    `json:"createdAt"`
	RancherMachine string       `json:"rancherMachine,omitempty"`
	RancherPhase   string       `json:"rancherPhase,omitempty"`
	// Step is where a machine being removed stands: Draining (its node),
	// Removing (its Rancher Machine is being deleted) or Deleting (its VM or
	// instance); empty otherwise.
	Step string `json:"step,omitempty"`
}

// Removal steps of a machine, as status shows them.
const (
	StepDraining = "Draining"
	StepRemoving = "Removing"
	StepDeleting = "Deleting"
)

// removalStep returns the step of a machine's removal: that of the last of
// the plan's actions for it that ran (an action that failed or waits holds
// the machine at its step; later actions did not run), or, when no action
// concerns it, what was observed. reached is how many runnable actions of
// the cluster ran, the failing one included (-1: all).
func removalStep(cp *ClusterPlan, reached int, m Machine, rm *RancherMachine) string {
	step := ""
	n := 0
	for i := range cp.Actions {
		a := &cp.Actions[i]
		if !a.Runnable() {
			continue
		}
		n++
		if reached >= 0 && n > reached {
			break
		}
		if !slices.Contains(a.Machines, m.Name) {
			continue
		}
		switch a.Kind {
		case ActionDrainMachine:
			step = StepDraining
		case ActionDeleteRancherMachine:
			step = StepRemoving
		case ActionDeleteMachines:
			step = StepDeleting
		}
	}
	switch {
	case step != "":
		return step
	case m.State == MachineDeleting:
		return StepDeleting
	case rm != nil && rm.Phase == RancherMachineDeleting:
		return StepRemoving
	}
	return ""
}

// Condition is one aspect of a cluster's state. LastTransitionTime changes
// only when Status does.
type Condition struct {
	Type               string    `json:"type"`
	Status             string    `json:"status"`
	Reason             string    `json:"reason"`
	Message            string    `json:"message,omitempty"`
	LastTransitionTime time.Time `json:"lastTransitionTime"`
}

// Condition types. Each means one thing, whatever the phase:
//   - Ready: the cluster serves: it is observed, Rancher says it is ready
//     (with a rancher block), and enough of each pool's nodes are Ready (a
//     quorum of an etcd pool, half of any other, of the machines it
//     should have — or, for a cluster whose removal is held back, has);
//   - UpToDate: every machine has its pool's current template;
//   - Converged: nothing is left to do or wait for this revision;
//   - Blocked: the policy holds something back (the message says what);
//   - Expiring: a temporary cluster's ttl runs out soon (the message says
//     when); only for clusters with a ttl;
//   - Registered: the cluster is registered with Rancher;
//   - SpecValid: the cluster's file is valid.
const (
	ConditionReady      = "Ready"
	ConditionUpToDate   = "UpToDate"
	ConditionConverged  = "Converged"
	ConditionBlocked    = "Blocked"
	ConditionExpiring   = "Expiring"
	ConditionRegistered = "Registered"
	ConditionSpecValid  = "SpecValid"
)

// StatusInput is what a sync reports on.
type StatusInput struct {
	Desired  Desired
	Observed Observed
	Plan     Plan
	// Apply is nil when nothing was applied (dry run).
	Apply *ApplyResult
	// Previous is the status before this sync, for condition transition
	// times and to report clusters that are gone.
	Previous *StatusSet
	// Now is the time of the sync; it is recorded only on a transition.
	Now time.Time
}

// StatusPath returns the path of a cluster's status file in the fleet repo.
func StatusPath(team, cluster string) string {
	return path.Join(StatusDir, team, cluster+".yaml")
}

// ComputeStatus returns the status of every cluster, sorted by name. A
// cluster that is gone (neither desired nor observed) is reported once as
// Decommissioned, then left out.
func ComputeStatus(in StatusInput) []*ClusterStatus {
	ix := newIndex(&in.Desired, &in.Observed, in.Now)
	out := make([]*ClusterStatus, 0, len(ix.clusters))
	seen := make(map[string]bool, len(ix.clusters))
	for _, pc := range ix.clusters {
		cp := in.Plan.Cluster(pc.name)
		if cp == nil {
			continue
		}
		seen[pc.name] = true
		if !cp.Desired && !cp.Observed && !cp.Held {
			continue
		}
		var prev *ClusterStatus
		if in.Previous != nil {
			prev = in.Previous.Clusters[pc.name]
		}
		if in.Plan.Blocked != "" {
			// Nothing was planned (fleet.yaml is invalid, Rancher could not
			// be seen): what was recorded stays, SUMMARY.md says why.
			if prev != nil {
				out = append(out, prev)
				continue
			}
			st := ix.clusterStatus(pc, cp, in, nil)
			st.Phase, st.Message = PhaseBlocked, in.Plan.Blocked
			out = append(out, st)
			continue
		}
		out = append(out, ix.clusterStatus(pc, cp, in, prev))
	}
	if in.Previous != nil {
		for _, name := range slices.Sorted(maps.Keys(in.Previous.Clusters)) {
			prev := in.Previous.Clusters[name]
			switch {
			case seen[name]:
				continue
			case in.Plan.Blocked != "":
				out = append(out, prev)
				continue
			case prev.Phase == PhaseDecommissioned:
				continue
			}
			st := &ClusterStatus{APIVersion: schema.APIVersion, Kind: StatusKind, Cluster: name, Team: prev.Team,
				Provider: prev.Provider, SpecCommit: in.Desired.RemovedBy(name), Phase: PhaseDecommissioned,
				Message: "every machine and the registration are gone", Cost: &Cost{}}
			st.Conditions = conditions(prev, in.Now, []Condition{
				{Type: ConditionReady, Status: "False", Reason: string(PhaseDecommissioned)},
			})
			out = append(out, st)
		}
		slices.SortFunc(out, func(a, b *ClusterStatus) int { return strings.Compare(a.Cluster, b.Cluster) })
	}
	return out
}

func (ix *index) clusterStatus(pc *pairedCluster, cp *ClusterPlan, in StatusInput, prev *ClusterStatus) *ClusterStatus {
	st := &ClusterStatus{
		APIVersion: schema.APIVersion, Kind: StatusKind, Cluster: pc.name, Team: pc.team, Provider: cp.Provider,
		SpecCommit: specCommit(&in.Desired, pc.name), Protected: cp.Protected, Paused: cp.Paused, ExpiresAt: cp.ExpiresAt,
	}
	if pc.held != nil {
		if pc.held.Revision != "" {
			st.SpecCommit = pc.held.Revision
		}
		for _, d := range pc.held.Diagnostics {
			st.Diagnostics = append(st.Diagnostics, d.String())
		}
	}
	if pc.spec != nil {
		st.KubernetesVersion = pc.spec.KubernetesVersion
	}
	// The cost of the machines as observed (after apply, when the world
	// was folded), priced like the plan's cost before.
	var costCP ClusterPlan
	ix.clusterCost(pc, &costCP)
	cost := costCP.Before
	st.Cost = &cost

	var templates []*Template // few: a linear scan dedupes them
	addTemplate := func(t *Template) {
		for _, x := range templates {
			if x.Hash == t.Hash {
				return
			}
		}
		templates = append(templates, t)
	}
	// How far the apply of this sync got: a failing or waiting action holds
	// its machine at its step.
	reached := -1
	if r := in.Apply.Cluster(pc.name); r != nil && r.Err != nil {
		reached = r.Done + 1
	}
	// Machines the previous status saw ready: one that is not ready now
	// has failed, however young, rather than still joining.
	wasReady := map[string]bool{}
	if prev != nil {
		for _, pp := range prev.Pools {
			for _, m := range pp.Machines {
				if m.Ready {
					wasReady[m.Name] = true
				}
			}
		}
	}
	anyReady, oldTemplate, scaling, notReady, enough := false, false, false, false, true
	var old int
	st.Pools = make([]PoolStatus, 0, len(pc.pools))
	for _, pp := range pc.pools {
		ps := PoolStatus{Name: pp.name, Machines: make([]MachineStatus, 0, len(pp.machines))}
		joining := 0
		if pp.spec != nil {
			ps.Roles, ps.Size, ps.Desired = pp.spec.Roles, pp.spec.SizeName, pp.spec.Replicas
			if !pc.expired {
				ps.Template = pp.tmpl.Hash
				addTemplate(pp.tmpl)
			} else {
				ps.Desired = 0
			}
		}
		if pc.spec == nil {
			ps.Desired = 0
		}
		for _, v := range pp.machines {
			m := v.m
			ms := MachineStatus{Name: m.Name, ID: m.ID, Provider: m.Provider, State: m.State, Ready: v.ready,
				Address: m.Address, Template: m.TemplateHash, CreatedAt: m.CreatedAt.UTC()}
			if v.rm != nil {
				ms.RancherMachine, ms.RancherPhase = v.rm.Name, v.rm.Phase
			}
			ms.Step = removalStep(cp, reached, *m, v.rm)
			if v.tmpl != nil {
				addTemplate(v.tmpl)
			}
			ps.Machines = append(ps.Machines, ms)
			if m.State != MachineDeleting {
				ps.Existing++
			}
			switch {
			case v.ready:
				ps.Ready++
				anyReady = true
			case m.State != MachineDeleting && v.young(in.Now) && !wasReady[m.Name]:
				// A new machine joining (a scale-up, a
				// replacement): work in progress, not a fault.
				scaling = true
				joining++
			case m.State != MachineDeleting:
				notReady = true
			}
			if !v.current && pp.spec != nil {
				oldTemplate = true
				old++
			}
		}
		if ps.Existing != ps.Desired {
			scaling = true
		}
		// What the pool should serve with: its desired machines, or those
		// it has while its cluster's removal waits, less the new ones
		// still joining.
		ref := ps.Desired
		if pc.spec == nil || pc.expired {
			ref = ps.Existing
		}
		ref = max(0, ref-joining)
		if need := (ref + 1) / 2; ref > 0 && (ps.Ready < need || slices.Contains(ps.Roles, schema.RoleEtcd) && ps.Ready < ref/2+1) {
			enough = false
		}
		st.Pools = append(st.Pools, ps)
	}
	slices.SortFunc(templates, func(a, b *Template) int { return strings.Compare(a.Hash, b.Hash) })
	st.Templates = make([]Template, len(templates))
	for i, t := range templates {
		st.Templates[i] = *t
	}
	if rc := pc.rc; rc != nil {
		rs := &RancherStatus{ClusterID: rc.ID, Ready: rc.Ready, Deleting: rc.Deleting, KubernetesVersion: rc.KubernetesVersion}
		rs.Bindings = slices.Clone(rc.Bindings)
		slices.SortFunc(rs.Bindings, compareBinding)
		for _, rm := range pc.orphanRMs {
			rs.OtherMachines = append(rs.OtherMachines, *rm)
		}
		for _, rm := range pc.foreignRMs {
			rs.OtherMachines = append(rs.OtherMachines, *rm)
		}
		slices.SortFunc(rs.OtherMachines, func(a, b RancherMachine) int { return strings.Compare(a.Name, b.Name) })
		st.Rancher = rs
	}
	rancherReady := !ix.rancher || (pc.rc != nil && pc.rc.Ready)

	var blocked, deferred []string
	runnable := false
	for _, a := range cp.Actions {
		switch {
		case a.Runnable():
			runnable = true
		case a.Deferred:
			deferred = append(deferred, a.String()+": "+a.Blocked)
		default:
			blocked = append(blocked, a.String()+": "+a.Blocked)
		}
	}
	if cp.Blocked != "" {
		blocked = append([]string{cp.Blocked}, blocked...)
	}
	st.Blocked = blocked
	st.Waiting = slices.Clone(cp.Waiting)
	st.Waiting = append(st.Waiting, deferred...)

	res := in.Apply.Cluster(pc.name)
	switch {
	case res != nil && res.Err != nil:
		st.LastError = res.Err.Error()
	case res == nil && prev != nil && (len(cp.Actions) > 0 || len(cp.Waiting) > 0):
		st.LastError = prev.LastError
	}
	failed := res != nil && (res.Reaction == ReactStall || res.Reaction == ReactFail)

	expiringSoon := cp.ExpiresAt != nil && cp.ExpiresAt.Sub(in.Now) <= ExpiringWindow
	decommissioning := (pc.spec == nil && !pc.heldNoSpec) || pc.expired
	switch {
	case decommissioning && !cp.Observed && pc.spec != nil:
		st.Phase = PhaseDecommissioned
	case decommissioning && len(blocked) > 0:
		st.Phase = PhaseBlocked
	case decommissioning && pc.expired && !cp.DecommissionStarted && !runnable:
		st.Phase = PhaseExpiring
	case decommissioning:
		st.Phase = PhaseDecommissioning
	case failed:
		st.Phase = PhaseFailed
	case len(blocked) > 0:
		st.Phase = PhaseBlocked
	case expiringSoon:
		st.Phase = PhaseExpiring
	case !cp.Observed || !anyReady:
		st.Phase = PhaseProvisioning
	case oldTemplate:
		st.Phase = PhaseUpdating
	case scaling:
		st.Phase = PhaseScaling
	case notReady || !rancherReady || !enough:
		st.Phase = PhaseDegraded
	default:
		st.Phase = PhaseReady
	}
	st.Message = statusMessage(st, cp)
	if st.Phase == PhaseProvisioning && pc.rc != nil && pc.rc.NoNodesYet {
		st.Message = "registering: Rancher provisions the cluster when its first machine registers; " + st.Message
	}

	conds := make([]Condition, 0, 7)
	ready := Condition{Type: ConditionReady, Status: "True", Reason: "Serving", Message: poolsReady(st.Pools)}
	switch {
	case st.Phase == PhaseDecommissioned:
		ready.Status, ready.Reason, ready.Message = "False", string(PhaseDecommissioned), ""
	case !cp.Observed || !anyReady:
		ready.Status, ready.Reason = "False", "NoNodeReady"
	case !rancherReady:
		ready.Status, ready.Reason, ready.Message = "False", "RancherNotReady", "Rancher does not report the cluster ready"
	case !enough:
		ready.Status, ready.Reason = "False", "NotEnoughNodesReady"
	}
	conds = append(conds, ready)
	upToDate := Condition{Type: ConditionUpToDate, Status: "True", Reason: "UpToDate"}
	if oldTemplate {
		upToDate.Status, upToDate.Reason, upToDate.Message = "False", "OldTemplate", count(old, "machine")+" with an old template"
	}
	conds = append(conds, upToDate)
	converged := Condition{Type: ConditionConverged, Status: "True", Reason: "Converged"}
	if runnable || len(cp.Waiting) > 0 || len(deferred) > 0 {
		converged.Status, converged.Reason = "False", string(st.Phase)
		if st.Phase == PhaseReady || st.Phase == PhaseBlocked {
			converged.Reason = "Converging"
		}
	}
	conds = append(conds, converged)
	blk := Condition{Type: ConditionBlocked, Status: "False", Reason: "NotBlocked"}
	if len(blocked) > 0 {
		blk.Status, blk.Reason, blk.Message = "True", "Policy", blocked[0]
	}
	conds = append(conds, blk)
	if cp.ExpiresAt != nil {
		exp := Condition{Type: ConditionExpiring, Status: "False", Reason: "NotYet", Message: "expires at " + cp.ExpiresAt.UTC().Format(time.RFC3339)}
		if expiringSoon || pc.expired {
			exp.Status, exp.Reason = "True", "TTL"
		}
		conds = append(conds, exp)
	}
	if ix.rancher {
		c := Condition{Type: ConditionRegistered, Status: "False", Reason: "NotRegistered"}
		switch rc := pc.rc; {
		case rc != nil && rc.Deleting:
			c.Reason = "Deleting"
		case rc != nil && rc.ID != "":
			c.Status, c.Reason, c.Message = "True", "Registered", rc.ID
		case rc != nil:
			c.Reason = "WaitingForID"
		}
		conds = append(conds, c)
	}
	spec := Condition{Type: ConditionSpecValid, Status: "True", Reason: "Valid"}
	if pc.held != nil {
		spec.Status, spec.Reason, spec.Message = "False", "FileRejected", pc.held.Path+" is rejected; the cluster is held at its last valid version"
		if pc.heldNoSpec {
			spec.Message = pc.held.Path + " is rejected and has no valid version"
		}
	}
	conds = append(conds, spec)
	st.Conditions = conditions(prev, in.Now, conds)
	return st
}

// conditions stamps transition times: a condition whose status is unchanged
// keeps its previous time.
func conditions(prev *ClusterStatus, now time.Time, conds []Condition) []Condition {
	for i := range conds {
		c := &conds[i]
		c.LastTransitionTime = now.UTC().Truncate(time.Second)
		if prev == nil {
			continue
		}
		for _, pcnd := range prev.Conditions {
			if pcnd.Type == c.Type && pcnd.Status == c.Status {
				c.LastTransitionTime = pcnd.LastTransitionTime.UTC()
			}
		}
	}
	return conds
}

// poolsReady writes the pools' readiness as "control 3/3, workers 4/5":
// ready machines of the desired ones, or of those it has when the cluster
// has no desired machines left (its removal is underway or held back).
func poolsReady(pools []PoolStatus) string {
	removed := true
	for _, p := range pools {
		if p.Desired > 0 {
			removed = false
		}
	}
	var b strings.Builder
	for i, p := range pools {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.Name)
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(p.Ready))
		b.WriteByte('/')
		if removed {
			b.WriteString(strconv.Itoa(p.Existing))
		} else {
			b.WriteString(strconv.Itoa(p.Desired))
		}
	}
	return b.String()
}

// statusMessage says in one line what is going on.
func statusMessage(st *ClusterStatus, cp *ClusterPlan) string {
	ready := poolsReady(st.Pools)
	switch st.Phase {
	case PhaseBlocked:
		if len(st.Blocked) > 0 {
			return st.Blocked[0]
		}
	case PhaseFailed:
		return st.LastError
	case PhaseDecommissioning:
		return "decommissioning: " + decommissionReason(cp)
	case PhaseExpiring:
		if cp.Expired {
			return "ttl expired: decommissioned in a later sync"
		}
		return "expires at " + cp.ExpiresAt.UTC().Format(time.RFC3339)
	case PhaseDecommissioned:
		return "every machine and the registration are gone"
	}
	if ready == "" {
		return "no pools"
	}
	return "ready: " + ready
}

func decommissionReason(cp *ClusterPlan) string {
	if cp.Expired && cp.ExpiresAt != nil {
		return "ttl expired at " + cp.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return "removed from the fleet repo"
}

// RenderStatus returns the status files of a sync keyed by their path in the
// fleet repo: status/<team>/<cluster>.yaml per cluster and status/SUMMARY.md.
// The map is the complete content of status/: a file there that is not in it
// is to be removed. The same input gives the same bytes.
func RenderStatus(in StatusInput) map[string][]byte {
	return StatusFiles(in, ComputeStatus(in))
}

// StatusFiles is RenderStatus of the statuses ComputeStatus(in) returned:
// a caller that needs the values too computes them once.
func StatusFiles(in StatusInput, sts []*ClusterStatus) map[string][]byte {
	files := make(map[string][]byte, len(sts)+1)
	// One buffer for every file, each file a full slice expression of it:
	// far fewer allocations than a buffer per file.
	w := yamlWriter{b: make([]byte, 0, 4096*len(sts))}
	for _, st := range sts {
		start := len(w.b)
		writeClusterStatus(&w, st)
		files[StatusPath(st.Team, st.Cluster)] = w.b[start:len(w.b):len(w.b)]
	}
	files[path.Join(StatusDir, SummaryFile)] = RenderSummary(in.Desired, in.Plan, sts)
	return files
}

// MarshalStatus returns one status file's YAML.
func MarshalStatus(st *ClusterStatus) []byte {
	var w yamlWriter
	writeClusterStatus(&w, st)
	return w.b
}

func writeClusterStatus(w *yamlWriter, st *ClusterStatus) {
	w.b = append(w.b, "# Written by fleetd: do not edit.\n"...)
	w.str(0, false, "apiVersion", st.APIVersion)
	w.str(0, false, "kind", st.Kind)
	w.str(0, false, "cluster", st.Cluster)
	w.str(0, false, "team", st.Team)
	w.strOpt(0, "provider", st.Provider)
	w.strOpt(0, "specCommit", st.SpecCommit)
	w.str(0, false, "phase", string(st.Phase))
	w.strOpt(0, "message", st.Message)
	w.strOpt(0, "kubernetesVersion", st.KubernetesVersion)
	w.boolOpt(0, "protected", st.Protected)
	w.boolOpt(0, "paused", st.Paused)
	if st.ExpiresAt != nil {
		w.time(0, false, "expiresAt", *st.ExpiresAt)
	}
	if c := st.Cost; c != nil {
		w.key(0, false, "cost")
		w.b = append(w.b, '\n')
		w.float(2, "hourly", c.Hourly, 4)
		w.float(2, "monthly", c.Monthly, 2)
		w.intOpt(2, "unpriced", c.Unpriced)
	}
	if r := st.Rancher; r != nil {
		w.key(0, false, "rancher")
		w.b = append(w.b, '\n')
		w.strOpt(2, "clusterID", r.ClusterID)
		w.bool(2, "ready", r.Ready)
		w.boolOpt(2, "deleting", r.Deleting)
		w.strOpt(2, "kubernetesVersion", r.KubernetesVersion)
		if len(r.Bindings) > 0 {
			w.key(2, false, "bindings")
			w.b = append(w.b, '\n')
			for _, b := range r.Bindings {
				w.str(6, true, "principal", b.PrincipalID)
				w.str(6, false, "role", b.Role)
			}
		}
		if len(r.OtherMachines) > 0 {
			w.key(2, false, "otherMachines")
			w.b = append(w.b, '\n')
			for _, m := range r.OtherMachines {
				w.str(6, true, "name", m.Name)
				w.strOpt(6, "node", m.Node)
				w.str(6, false, "phase", m.Phase)
			}
		}
	}
	if len(st.Pools) > 0 {
		w.key(0, false, "pools")
		w.b = append(w.b, '\n')
		for _, p := range st.Pools {
			w.str(4, true, "name", p.Name)
			w.flowList(4, "roles", p.Roles)
			w.strOpt(4, "size", p.Size)
			w.strOpt(4, "template", p.Template)
			w.int(4, "desired", p.Desired)
			w.int(4, "existing", p.Existing)
			w.int(4, "ready", p.Ready)
			if len(p.Machines) > 0 {
				w.key(4, false, "machines")
				w.b = append(w.b, '\n')
				for _, m := range p.Machines {
					w.str(8, true, "name", m.Name)
					w.str(8, false, "id", m.ID)
					w.str(8, false, "provider", m.Provider)
					w.str(8, false, "state", string(m.State))
					w.bool(8, "ready", m.Ready)
					w.strOpt(8, "address", m.Address)
					w.str(8, false, "template", m.Template)
					w.time(8, false, "createdAt", m.CreatedAt)
					w.strOpt(8, "rancherMachine", m.RancherMachine)
					w.strOpt(8, "rancherPhase", m.RancherPhase)
					w.strOpt(8, "step", m.Step)
				}
			}
		}
	}
	if len(st.Conditions) > 0 {
		w.key(0, false, "conditions")
		w.b = append(w.b, '\n')
		for _, c := range st.Conditions {
			w.str(4, true, "type", c.Type)
			w.str(4, false, "status", c.Status)
			w.str(4, false, "reason", c.Reason)
			w.strOpt(4, "message", c.Message)
			w.time(4, false, "lastTransitionTime", c.LastTransitionTime)
		}
	}
	w.strList(0, "blocked", st.Blocked)
	w.strList(0, "waiting", st.Waiting)
	w.strOpt(0, "lastError", st.LastError)
	w.strList(0, "diagnostics", st.Diagnostics)
	if len(st.Templates) > 0 {
		w.key(0, false, "templates")
		w.b = append(w.b, '\n')
		for _, t := range st.Templates {
			w.str(4, true, "hash", t.Hash)
			w.str(4, false, "provider", t.Provider)
			w.str(4, false, "kubernetesVersion", t.KubernetesVersion)
			w.flowList(4, "roles", t.Roles)
			w.key(4, false, "size")
			s := t.Size
			if s == (schema.MachineSize{}) {
				w.b = append(w.b, " {}\n"...)
				continue
			}
			w.b = append(w.b, '\n')
			w.strOpt(6, "instanceType", s.InstanceType)
			w.strOpt(6, "image", s.Image)
			w.intOpt(6, "cpus", s.CPUs)
			w.intOpt(6, "memoryMiB", s.MemoryMiB)
			w.intOpt(6, "diskGiB", s.DiskGiB)
			w.strOpt(6, "template", s.Template)
		}
	}
}

// StatusChange is a cluster whose status file changed between two renderings.
type StatusChange struct {
	Team, Cluster string
	// Summary is the new state in a few words ("Ready (control 3/3, workers
	// 5/5)"), or "removed" when the file is gone.
	Summary string
	// SpecOnly marks a change of the spec commit alone: the cluster's facts
	// are the same.
	SpecOnly bool
}

// StatusChanges compares two sets of status files (as RenderStatus returns
// them) and lists the clusters whose file changed, sorted by team and
// cluster: the facts a status commit records. Files that do not parse are
// reported by their path.
func StatusChanges(prev, next map[string][]byte) []StatusChange {
	var out []StatusChange
	team := func(p string) (string, string, bool) {
		rel, ok := strings.CutPrefix(p, StatusDir+"/")
		if !ok || !strings.HasSuffix(rel, ".yaml") {
			return "", "", false
		}
		t, c, ok := strings.Cut(strings.TrimSuffix(rel, ".yaml"), "/")
		return t, c, ok && !strings.Contains(c, "/")
	}
	for _, p := range slices.Sorted(maps.Keys(next)) {
		t, c, ok := team(p)
		if !ok || string(prev[p]) == string(next[p]) {
			continue
		}
		ch := StatusChange{Team: t, Cluster: c, Summary: "updated"}
		if st, err := parseStatus(next[p]); err == nil {
			ch.Summary = string(st.Phase)
			if r := poolsReady(st.Pools); r != "" && st.Phase != PhaseDecommissioned {
				ch.Summary += " (" + r + ")"
			}
			if old, err := parseStatus(prev[p]); err == nil && prev[p] != nil {
				o, n := *old, *st
				o.SpecCommit, n.SpecCommit = "", ""
				ch.SpecOnly = string(MarshalStatus(&o)) == string(MarshalStatus(&n))
			}
		}
		out = append(out, ch)
	}
	for _, p := range slices.Sorted(maps.Keys(prev)) {
		if _, ok := next[p]; ok {
			continue
		}
		if t, c, ok := team(p); ok {
			out = append(out, StatusChange{Team: t, Cluster: c, Summary: "removed"})
		}
	}
	slices.SortFunc(out, func(a, b StatusChange) int {
		return strings.Compare(a.Team+"/"+a.Cluster, b.Team+"/"+b.Cluster)
	})
	return out
}

// specCommit is the commit a cluster's status reflects: the newest commit
// that changed its file, when history tells it, else the synced revision.
// A commit that changes one cluster's file thus changes that cluster's
// status file and SUMMARY.md only, not every status file of the fleet.
func specCommit(d *Desired, cluster string) string {
	if c := d.ChangedBy[cluster]; c != "" {
		return c
	}
	return d.RemovedBy(cluster)
}
