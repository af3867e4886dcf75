package reconcile

import (
	"cmp"
	"maps"
	"slices"
)

// Fold returns the observed world as apply left it: o with the effects of
// every completed action applied, as the calls answered. A sync renders its
// status from the folded world, so the status of a sync that created machines
// counts them, and the next plan read from that status does not create them
// again. o is not modified.
func Fold(o Observed, res *ApplyResult) Observed {
	if res == nil {
		return o
	}
	out := o
	out.Machines = slices.Clone(o.Machines)
	out.Rancher = slices.Clone(o.Rancher)
	deleted := map[string]bool{}
	for i := range res.Clusters {
		fx := &res.Clusters[i].Effects
		for _, id := range fx.DeletedIDs {
			deleted[id] = true
		}
	}
	have := make(map[string]bool, len(out.Machines))
	for i := range out.Machines {
		m := &out.Machines[i]
		have[m.Provider+"\x00"+m.ID] = true
		if deleted[m.ID] {
			m.State = MachineDeleting
		}
	}
	for i := range res.Clusters {
		cr := &res.Clusters[i]
		fx := &cr.Effects
		for _, m := range fx.Created {
			if !have[m.Provider+"\x00"+m.ID] {
				out.Machines = append(out.Machines, m)
				have[m.Provider+"\x00"+m.ID] = true
			}
		}
		if fx.Registered == nil && !fx.Unregistered && len(fx.Bound) == 0 && len(fx.Unbound) == 0 && len(fx.RancherMachinesDeleted) == 0 {
			continue
		}
		j := slices.IndexFunc(out.Rancher, func(rc RancherCluster) bool { return rc.Name == cr.Cluster })
		if j < 0 {
			if fx.Registered == nil {
				continue
			}
			out.Rancher = append(out.Rancher, RancherCluster{Name: cr.Cluster})
			j = len(out.Rancher) - 1
		}
		rc := &out.Rancher[j]
		if r := fx.Registered; r != nil {
			machines, nodes, merr, nerr := rc.Machines, rc.Nodes, rc.MachinesError, rc.NodesError
			bindings := rc.Bindings
			*rc = *r
			rc.Name = cr.Cluster
			rc.Machines, rc.Nodes, rc.MachinesError, rc.NodesError = machines, nodes, merr, nerr
			if rc.Bindings == nil {
				rc.Bindings = bindings
			}
		}
		rc.Bindings = slices.Clone(rc.Bindings)
		for _, b := range fx.Unbound {
			rc.Bindings = slices.DeleteFunc(rc.Bindings, func(x Binding) bool { return x == b })
		}
		for _, b := range fx.Bound {
			if !slices.Contains(rc.Bindings, b) {
				rc.Bindings = append(rc.Bindings, b)
			}
		}
		slices.SortFunc(rc.Bindings, compareBinding)
		if fx.Unregistered {
			rc.Deleting = true
		}
		if len(fx.RancherMachinesDeleted) > 0 {
			rc.Machines = slices.Clone(rc.Machines)
			for k := range rc.Machines {
				if slices.Contains(fx.RancherMachinesDeleted, rc.Machines[k].Name) {
					rc.Machines[k].Phase = RancherMachineDeleting
				}
			}
		}
	}
	slices.SortFunc(out.Machines, func(a, b Machine) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	slices.SortFunc(out.Rancher, func(a, b RancherCluster) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// WithTemplates returns o with the machine templates the previous status
// knew and o lacks: machines whose template is no longer in the fleet repo
// are still priced and their roles known. prev may be nil.
func (o Observed) WithTemplates(prev *StatusSet) Observed {
	if prev == nil {
		return o
	}
	cloned := false
	for h, t := range prev.Templates() {
		if _, ok := o.Templates[h]; !ok {
			if !cloned {
				o.Templates, cloned = maps.Clone(o.Templates), true
				if o.Templates == nil {
					o.Templates = map[string]Template{}
				}
			}
			o.Templates[h] = t
		}
	}
	return o
}
