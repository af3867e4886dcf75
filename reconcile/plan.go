package reconcile

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetd/fleetd/schema"
)

// Compute plans one sync: it pairs desired with observed state, diffs them
// into actions (Diff) and holds back what policy forbids (Gate). It takes no
// context, does no I/O and reads no clock: the same input gives the same plan,
// byte for byte.
func Compute(d Desired, o Observed, policy schema.Limits, now time.Time) Plan {
	ix := newIndex(&d, &o, now)
	p := Gate(ix.diff(), d, policy)
	ix.costAfterSync(&p)
	return p
}

// Diff returns the actions that converge the observed world to the desired
// fleet, before any policy check, with the cost before and after.
func Diff(d Desired, o Observed, now time.Time) Plan {
	return newIndex(&d, &o, now).diff()
}

func (ix *index) diff() Plan {
	d := ix.d
	p := Plan{Revision: d.Revision, Clusters: make([]ClusterPlan, 0, len(ix.clusters)), UnidentifiedRejected: ix.unidentified}
	switch {
	case d.Fleet == nil:
		p.Blocked = "fleet.yaml is invalid: nothing is changed until it is fixed"
		if len(d.Diagnostics) > 0 {
			p.Blocked += " (" + firstError(d.Diagnostics) + ")"
		}
	case ix.rancher && ix.o.RegistryError != "":
		p.Blocked = "Rancher could not be observed: " + ix.o.RegistryError
	}
	for _, pc := range ix.clusters {
		cp := ClusterPlan{
			Name: pc.name, Team: pc.team, Provider: pc.provider(),
			Desired: pc.spec != nil, Observed: pc.observed(),
			Held: pc.held != nil, ExpiresAt: pc.expiresAt, Expired: pc.expired,
		}
		if pc.spec != nil {
			cp.Protected = pc.spec.Protected
			cp.Paused = pc.spec.Paused
			if pc.spec.TTL > 0 && pc.expiresAt == nil {
				why := "the commit that created its file is unknown"
				if d.FactsError != "" {
					why = d.FactsError
				}
				cp.Notes = append(cp.Notes, "ttl "+pc.spec.TTL.String()+" is not applied: "+why)
			}
		} else if !pc.heldNoSpec {
			cp.Removed = cp.Observed
			cp.Protected = ix.protected[pc.name] || (pc.rc != nil && pc.rc.Protected)
		}
		pl := planner{ix: ix, pc: pc, cp: &cp}
		if p.Blocked == "" {
			pl.plan()
		}
		cp.Change = pl.change()
		ix.clusterCost(pc, &cp)
		p.Clusters = append(p.Clusters, cp)
	}
	ix.totals(&p)
	return p
}

func firstError(ds schema.Diagnostics) string {
	for _, d := range ds {
		if d.Severity == schema.SeverityError {
			return d.String()
		}
	}
	return ds[0].String()
}

// planner plans one cluster.
type planner struct {
	ix *index
	pc *pairedCluster
	cp *ClusterPlan
	// removals are the machines to take out, with why, in the order found.
	removals []removal
	// deletes collect VMs to delete, by provider.
	deletes map[string]*Action
	// taken are the names new machines must not get; built when needed.
	taken *nameSet
}

type removal struct {
	v      *machineView
	reason string
}

func (pl *planner) add(a Action) {
	a.Cluster = pl.pc.name
	pl.cp.Actions = append(pl.cp.Actions, a)
}

func (pl *planner) wait(format string, args ...any) {
	pl.cp.Waiting = append(pl.cp.Waiting, fmt.Sprintf(format, args...))
}

func (pl *planner) change() Change {
	pc, cp := pl.pc, pl.cp
	switch {
	case pc.spec == nil && pc.heldNoSpec:
		return ChangeNone
	case pc.spec == nil || pc.expired:
		if !cp.Observed {
			return ChangeNone
		}
		return ChangeDecommission
	case len(cp.Actions) == 0:
		return ChangeNone
	case !cp.Observed:
		return ChangeCreate
	}
	return ChangeUpdate
}

func (pl *planner) plan() {
	pc := pl.pc
	if pc.heldNoSpec {
		pl.cp.Blocked = fmt.Sprintf("cluster file %s is rejected and has no earlier valid version: nothing is done until it is fixed", pc.held.Path)
		return
	}
	if why := pl.unobservable(); why != "" {
		pl.wait("%s", why)
		pl.cp.Unobserved = true
		return
	}
	if pc.spec == nil || pc.expired {
		pl.decommission()
		return
	}
	pl.converge()
}

// unobservable says why the cluster cannot be planned safely: part of it could
// not be observed.
func (pl *planner) unobservable() string {
	o, pc := pl.ix.o, pl.pc
	if pc.rc != nil && pc.rc.MachinesError != "" {
		return "Rancher machines could not be listed: " + pc.rc.MachinesError
	}
	if len(o.ProviderErrors) == 0 {
		return ""
	}
	var provs []string
	if pc.spec != nil && !pc.expired {
		provs = append(provs, pc.spec.Provider)
	}
	for _, m := range pc.machines {
		provs = append(provs, m.Provider)
	}
	slices.Sort(provs)
	for _, prov := range slices.Compact(provs) {
		if msg, bad := o.ProviderErrors[prov]; bad {
			return fmt.Sprintf("provider %s could not be listed: %s", prov, msg)
		}
	}
	return ""
}

// converge plans a desired cluster toward its spec.
func (pl *planner) converge() {
	ix, pc, s := pl.ix, pl.pc, pl.pc.spec
	rc := pc.rc
	registered := rc != nil && rc.ID != ""
	if ix.rancher {
		reg := func() *RegisterSpec {
			return &RegisterSpec{Name: s.Name, Team: s.Team, KubernetesVersion: s.KubernetesVersion, Protected: s.Protected, Labels: s.Labels}
		}
		switch {
		case rc == nil:
			pl.add(Action{Kind: ActionRegister, Register: reg(), Reason: "new cluster"})
		case rc.Deleting:
			pl.wait("Rancher is deleting the cluster: it is registered again once that is done")
			return
		case rc.KubernetesVersion != s.KubernetesVersion:
			pl.add(Action{Kind: ActionRegister, Register: reg(), Reason: fmt.Sprintf("Kubernetes version %s → %s", orNone(rc.KubernetesVersion), s.KubernetesVersion)})
		case rc.Protected != s.Protected:
			pl.add(Action{Kind: ActionRegister, Register: reg(), Reason: fmt.Sprintf("protected %t → %t", rc.Protected, s.Protected)})
		}
		if registered {
			pl.bindings(false)
		}
		for _, rm := range pc.orphanRMs {
			if rm.Phase == RancherMachineDeleting {
				pl.wait("Rancher is removing %s (its machine is gone)", rm.Node)
				continue
			}
			pl.add(Action{Kind: ActionDeleteRancherMachine, Machines: []string{rm.Node}, RancherMachine: rm.Name,
				ExcludeDrain: true, Reason: "its machine is gone"})
		}
	}
	if rc != nil && rc.NoNodesYet && !rc.Deleting {
		pl.wait("cluster %s is registering: Rancher provisions it when its first machine registers", pc.name)
	}
	for _, pp := range pc.pools {
		pl.planPool(pp)
	}
	pl.removeAll()
	if ix.rancher && !registered {
		pl.bindings(true)
	}
}

// nameSet is a sorted set of machine names; clusters are small.
type nameSet []string

func (s *nameSet) has(name string) bool {
	_, found := slices.BinarySearch(*s, name)
	return found
}

func (s *nameSet) add(name string) {
	if i, found := slices.BinarySearch(*s, name); !found {
		*s = slices.Insert(*s, i, name)
	}
}

// takenNames returns the names that new machines must not get: every machine
// of the cluster and every node Rancher still knows.
func (pl *planner) takenNames() *nameSet {
	if pl.taken != nil {
		return pl.taken
	}
	pc := pl.pc
	taken := make(nameSet, 0, len(pc.machines)+4)
	for _, m := range pc.machines {
		taken = append(taken, m.Name)
	}
	if pc.rc != nil {
		for _, rm := range pc.rc.Machines {
			if rm.Node != "" {
				taken = append(taken, rm.Node)
			}
		}
	}
	slices.Sort(taken)
	pl.taken = &taken
	return pl.taken
}

// newNames returns n free machine names of the pool, lowest ordinals first.
func newNames(cluster string, pp *pairedPool, taken *nameSet, n int) []string {
	prefix := machinePrefix(cluster, pp.name, pp.tmpl.Hash)
	names := make([]string, 0, n)
	for i := 0; len(names) < n; i++ {
		name := prefix + strconv.Itoa(i)
		if !taken.has(name) {
			taken.add(name)
			names = append(names, name)
		}
	}
	return names
}

// planPool sizes one pool and rolls it to its template: scale up at once,
// scale down by preference, replace one machine at a time with a surge.
func (pl *planner) planPool(pp *pairedPool) {
	ix, pc := pl.ix, pl.pc
	want := 0
	if pp.spec != nil {
		want = pp.spec.Replicas
	}
	joinable := ix.rancher && pc.rc != nil && pc.rc.ID != "" && !pc.rc.Deleting
	// A machine that is not ready is starting, unless this plan removes it
	// (its Rancher machine already gone, say): that is said once the pool's
	// removals are known.
	type startingAt struct {
		v *machineView
		i int
	}
	var starting []startingAt
	first := len(pl.removals)
	defer func() {
		for k := len(starting) - 1; k >= 0; k-- {
			st := starting[k]
			if slices.ContainsFunc(pl.removals[first:], func(r removal) bool { return r.v == st.v }) {
				pl.cp.Waiting = slices.Delete(pl.cp.Waiting, st.i, st.i+1)
			}
		}
	}()
	var live, cur, old []*machineView
	for _, v := range pp.machines {
		switch {
		case v.removing:
			pl.wait("%s is being removed", v.m.Name)
			continue
		case joinable && v.rm == nil && !v.young(ix.now):
			pl.removals = append(pl.removals, removal{v, fmt.Sprintf("did not join Rancher within %s", JoinTimeout)})
			continue
		case !v.ready && v.young(ix.now) && want > 0:
			starting = append(starting, startingAt{v, len(pl.cp.Waiting)})
			pl.wait("%s is starting", v.m.Name)
		}
		live = append(live, v)
		if v.current {
			cur = append(cur, v)
		} else {
			old = append(old, v)
		}
	}
	total := len(live)
	if want == 0 {
		reason := fmt.Sprintf("pool %s is no longer in the spec", pp.name)
		if pp.spec != nil {
			reason = fmt.Sprintf("scale %s %d → 0", pp.name, total)
		}
		for _, v := range live {
			pl.removals = append(pl.removals, removal{v, reason})
		}
		return
	}
	if total < want {
		reason := fmt.Sprintf("scale %s %d → %d", pp.name, total, want)
		if len(pp.machines) > total && total > 0 || len(old) > 0 {
			reason = fmt.Sprintf("%s has %d of %d machines", pp.name, total, want)
		}
		pl.add(Action{Kind: ActionCreateMachines, Provider: pc.spec.Provider, Pool: pp.name,
			Machines: newNames(pc.name, pp, pl.takenNames(), want-total), Template: pp.tmpl, Reason: reason})
		return
	}
	rolling := len(old) > 0
	surge := 0
	if rolling {
		surge = 1
	}
	if excess := total - want - surge; excess > 0 {
		slices.SortFunc(live, scaleDownOrder)
		reason := fmt.Sprintf("scale %s %d → %d", pp.name, total, want)
		for _, v := range live[:excess] {
			pl.removals = append(pl.removals, removal{v, reason})
		}
		return
	}
	if !rolling {
		return
	}
	for _, v := range cur {
		if !v.ready {
			if !v.young(ix.now) {
				pl.wait("rolling %s: waiting for %s to become ready", pp.name, v.m.Name)
			}
			return
		}
	}
	slices.SortFunc(old, replaceOrder)
	victim := old[0]
	if total == want {
		from := "an unknown template"
		if victim.m.TemplateHash != "" {
			from = "template " + short(victim.m.TemplateHash)
		}
		pl.add(Action{Kind: ActionReplaceMachine, Provider: pc.spec.Provider, Pool: pp.name,
			Machines: newNames(pc.name, pp, pl.takenNames(), 1), Replaces: victim.m.Name, Template: pp.tmpl,
			Reason: fmt.Sprintf("%s → template %s (%d of %d machines to replace)", from, short(pp.tmpl.Hash), len(old), want)})
		return
	}
	pl.removals = append(pl.removals, removal{victim, fmt.Sprintf("replaced by a ready machine of template %s", short(pp.tmpl.Hash))})
}

func short(hash string) string {
	if len(hash) > 5 {
		return hash[:5]
	}
	return hash
}

// scaleDownOrder puts first the machines to remove first: not ready, then of
// an old template, then the newest.
func scaleDownOrder(a, b *machineView) int {
	if a.ready != b.ready {
		if !a.ready {
			return -1
		}
		return 1
	}
	if a.current != b.current {
		if !a.current {
			return -1
		}
		return 1
	}
	return cmp.Or(b.m.CreatedAt.Compare(a.m.CreatedAt), strings.Compare(b.m.Name, a.m.Name))
}

// replaceOrder picks the old machine to replace next: not ready first, then
// the oldest.
func replaceOrder(a, b *machineView) int {
	if a.ready != b.ready {
		if !a.ready {
			return -1
		}
		return 1
	}
	return cmp.Or(a.m.CreatedAt.Compare(b.m.CreatedAt), strings.Compare(a.m.Name, b.m.Name))
}

// removeAll turns the removals into actions. A machine with a Rancher machine
// is drained and its Rancher machine deleted; its VM goes in a later sync,
// once Rancher is done. Etcd members go one at a time and never below quorum.
func (pl *planner) removeAll() {
	ix, pc := pl.ix, pl.pc
	members, ready, inFlight := 0, 0, false
	for _, pp := range pc.pools {
		for _, v := range pp.machines {
			if v.etcd && v.removing && (v.rm != nil || !ix.rancher) {
				inFlight = true
			}
			if v.member(ix.rancher) {
				members++
				if v.ready {
					ready++
				}
			}
		}
	}
	nodesKnown, nodesWhy := true, ""
	switch rc := pc.rc; {
	case rc != nil && rc.NodesError != "":
		nodesKnown, nodesWhy = false, rc.NodesError
	case rc != nil && rc.NoNodesYet:
		nodesKnown, nodesWhy = false, "Rancher has not provisioned the cluster yet"
	}
	for _, r := range pl.removals {
		v := r.v
		if v.member(ix.rancher) {
			switch {
			case inFlight:
				pl.wait("keeping %s: another etcd member is being removed", v.m.Name)
				continue
			case !nodesKnown:
				pl.wait("keeping %s: node readiness is unknown (%s)", v.m.Name, nodesWhy)
				continue
			}
			readyAfter := ready
			if v.ready {
				readyAfter--
			}
			if readyAfter < (members-1)/2+1 {
				pl.wait("keeping %s: removing it would leave %d of %d etcd members ready, below quorum", v.m.Name, readyAfter, members-1)
				continue
			}
			inFlight = true
			members--
			ready = readyAfter
		}
		if v.rm != nil && ix.rancher {
			if !nodesKnown {
				pl.wait("keeping %s: node readiness is unknown (%s)", v.m.Name, nodesWhy)
				continue
			}
			pl.add(Action{Kind: ActionDrainMachine, Machines: []string{v.m.Name}, ClusterID: pc.rc.ID, Reason: r.reason})
			pl.add(Action{Kind: ActionDeleteRancherMachine, Machines: []string{v.m.Name}, RancherMachine: v.rm.Name, Reason: r.reason})
			continue
		}
		pl.deleteVM(v.m, r.reason, false)
	}
	pl.flushDeletes(false)
}

// deleteVM collects a VM into its provider's delete action.
func (pl *planner) deleteVM(m *Machine, reason string, decommission bool) {
	if pl.deletes == nil {
		pl.deletes = map[string]*Action{}
	}
	a := pl.deletes[m.Provider]
	if a == nil {
		a = &Action{Kind: ActionDeleteMachines, Provider: m.Provider, Reason: reason, Decommission: decommission}
		pl.deletes[m.Provider] = a
	} else if a.Reason != reason {
		a.Reason = joinReason(a.Reason, reason)
	}
	a.Machines = append(a.Machines, m.Name)
	a.IDs = append(a.IDs, m.ID)
}

func joinReason(a, b string) string {
	if strings.Contains(a, b) {
		return a
	}
	return a + "; " + b
}

func (pl *planner) flushDeletes(decommission bool) {
	for _, prov := range slices.Sorted(maps.Keys(pl.deletes)) {
		a := pl.deletes[prov]
		a.Decommission = decommission
		pl.add(*a)
	}
	pl.deletes = nil
}

// bindings plans access: bind what the spec grants and is missing, unbind what
// fleetd granted and the spec no longer does.
func (pl *planner) bindings(newCluster bool) {
	pc := pl.pc
	want := make([]Binding, 0, len(pc.spec.Access))
	for _, a := range pc.spec.Access {
		want = append(want, Binding{PrincipalID: principalID(pl.ix.auth, a.Group), Role: a.Role})
	}
	slices.SortFunc(want, compareBinding)
	want = slices.Compact(want)
	var have []Binding
	if pc.rc != nil {
		have = slices.Clone(pc.rc.Bindings)
		slices.SortFunc(have, compareBinding)
	}
	for i := range want {
		if _, found := slices.BinarySearchFunc(have, want[i], compareBinding); !found {
			b := want[i]
			reason := "access in the spec"
			if newCluster {
				reason = "access in the spec, once registered"
			}
			pl.add(Action{Kind: ActionBind, Binding: &b, Reason: reason})
		}
	}
	for i := range have {
		if _, found := slices.BinarySearchFunc(want, have[i], compareBinding); !found {
			b := have[i]
			pl.add(Action{Kind: ActionUnbind, Binding: &b, Reason: "no longer in the spec"})
		}
	}
}

func compareBinding(a, b Binding) int {
	return cmp.Or(cmp.Compare(a.PrincipalID, b.PrincipalID), cmp.Compare(a.Role, b.Role))
}

// decommission plans the next step of removing a cluster: unbind and
// unregister; once Rancher has deleted the cluster, delete every machine.
func (pl *planner) decommission() {
	ix, pc, cp := pl.ix, pl.pc, pl.cp
	reason := "removed from the fleet repo"
	if pc.expired {
		reason = "ttl expired at " + pc.expiresAt.Format(time.RFC3339)
	}
	if ix.rancher && pc.rc != nil {
		if pc.rc.Deleting {
			cp.DecommissionStarted = true
			pl.wait("Rancher is deleting the cluster")
			return
		}
		bs := slices.Clone(pc.rc.Bindings)
		slices.SortFunc(bs, compareBinding)
		for _, b := range bs {
			pl.add(Action{Kind: ActionUnbind, Binding: &b, Reason: reason, Decommission: true})
		}
		pl.add(Action{Kind: ActionUnregister, Reason: reason, Decommission: true})
		return
	}
	cp.DecommissionStarted = ix.rancher
	for _, m := range pc.machines {
		if m.State == MachineDeleting {
			cp.DecommissionStarted = true
			pl.wait("%s is being deleted", m.Name)
			continue
		}
		pl.deleteVM(m, reason, true)
	}
	pl.flushDeletes(true)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
