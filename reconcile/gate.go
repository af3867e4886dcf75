package reconcile

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetd/fleetd/schema"
)

// Gate holds back the actions that policy forbids in this sync, in this order:
// paused clusters change nothing; protected clusters are never decommissioned;
// no decommission at all while a rejected cluster file cannot be matched to
// its cluster, or while more than pruneGuardPercent of the fleet's clusters
// are removed at once without policy.confirmPrune; at most
// maxDecommissionsPerSync clusters are decommissioned; at most
// maxMachineChangesPerSync machines are created, drained or deleted across the
// fleet. A held action keeps its place in the plan with the reason in
// Blocked; Deferred marks those a later sync runs by itself. Gate is pure; it
// changes p's actions in place and returns p.
func Gate(p Plan, d Desired, l schema.Limits) Plan {
	for i := range p.Clusters {
		cp := &p.Clusters[i]
		if cp.Paused {
			// Nothing is done, so nothing is waited for either.
			cp.Waiting = nil
		}
		for j := range cp.Actions {
			a := &cp.Actions[j]
			switch {
			case d.Stalled[cp.Name] != "":
				block(a, "stalled at this revision: "+d.Stalled[cp.Name]+"; not retried until the fleet repo changes", false)
			case cp.Paused:
				block(a, "cluster is paused: it is observed and reported, never changed", false)
			case d.Backoff[cp.Name].Failures > 0:
				b := d.Backoff[cp.Name]
				block(a, fmt.Sprintf("backing off after %s: retried at %s; last error: %s",
					count(b.Failures, "transient failure"), b.Until.UTC().Format(time.RFC3339), b.Reason), false)
			case a.Decommission && cp.Removed && d.FactsError != "":
				block(a, "the git history cannot tell whether the cluster was protected when its file was removed ("+d.FactsError+"): nothing is decommissioned until it can", false)
			case a.Decommission && cp.Removed && d.Unproven(cp.Name) != "":
				block(a, d.Unproven(cp.Name), false)
			case a.Decommission && cp.Protected && cp.Expired:
				block(a, "cluster is protected: its TTL expired, but it is not decommissioned while protected is true", false)
			case a.Decommission && cp.Protected:
				block(a, "cluster is protected: restore its file, or set protected: false in it before removing it", false)
			}
		}
	}
	if len(p.UnidentifiedRejected) > 0 {
		blockDecommissions(&p, fmt.Sprintf("rejected cluster file %s cannot be matched to its cluster: nothing is decommissioned until it is fixed",
			strings.Join(p.UnidentifiedRejected, ", ")), false)
	}
	gatePrune(&p, d, l)
	gateDecommissions(&p, l.MaxDecommissionsPerSync)
	gateMachineChanges(&p, l.MaxMachineChangesPerSync)
	return p
}

func block(a *Action, reason string, deferred bool) {
	if a.Blocked != "" {
		return
	}
	a.Blocked = reason
	a.Deferred = deferred
}

func blockDecommissions(p *Plan, reason string, deferred bool) {
	for i := range p.Clusters {
		cp := &p.Clusters[i]
		for j := range cp.Actions {
			if cp.Actions[j].Decommission {
				block(&cp.Actions[j], reason, deferred)
			}
		}
	}
}

// gatePrune stops every decommission when a change makes too many clusters
// undesired at once (files removed, TTLs expired), until fleet.yaml's
// policy.confirmPrune names the commit that caused them: the commit that
// removed a file, or the newest commit that changed an expired cluster's
// file. Decommissions caused by the confirmed commit are not counted.
func gatePrune(p *Plan, d Desired, l schema.Limits) {
	pending, total := 0, 0
	var causes []string
	for i := range p.Clusters {
		cp := &p.Clusters[i]
		if cp.Observed {
			total++
		}
		if !cp.Observed || cp.DecommissionStarted || !(cp.Removed || cp.Expired) || !hasRunnableDecommission(cp) {
			continue
		}
		by := d.Revision
		switch {
		case cp.Removed:
			by = d.RemovedBy(cp.Name)
		case cp.Expired && d.ChangedBy[cp.Name] != "":
			by = d.ChangedBy[cp.Name]
		}
		if l.ConfirmPrune != "" && sameCommit(by, l.ConfirmPrune) {
			continue
		}
		pending++
		causes = append(causes, orNone(by))
	}
	if pending == 0 || pending*100 <= l.PruneGuardPercent*total {
		return
	}
	slices.Sort(causes)
	causes = slices.Compact(causes)
	blockDecommissions(p, fmt.Sprintf("prune guard: %d of %d clusters (%d%%) would be decommissioned at once (removed or expired), more than pruneGuardPercent %d%%; "+
		"if that is intended, set policy.confirmPrune in fleet.yaml to the commit that caused it (%s)",
		pending, total, pending*100/total, l.PruneGuardPercent, strings.Join(causes, ", ")), false)
}

func hasRunnableDecommission(cp *ClusterPlan) bool {
	return slices.ContainsFunc(cp.Actions, func(a Action) bool { return a.Decommission && a.Blocked == "" })
}

// sameCommit compares a full commit SHA with a possibly abbreviated one (at
// least 7 hex digits).
func sameCommit(full, given string) bool {
	if len(given) < 7 || len(given) > len(full) {
		return full != "" && full == given
	}
	return strings.EqualFold(full[:len(given)], given)
}

// gateDecommissions lets at most max clusters take a decommission step,
// finishing those already started first.
func gateDecommissions(p *Plan, limit int) {
	var idx []int
	for i := range p.Clusters {
		cp := &p.Clusters[i]
		if slices.ContainsFunc(cp.Actions, func(a Action) bool { return a.Decommission && a.Runnable() }) {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		sa, sb := p.Clusters[a].DecommissionStarted, p.Clusters[b].DecommissionStarted
		switch {
		case sa == sb:
			return 0
		case sa:
			return -1
		}
		return 1
	})
	for n, i := range idx {
		if n < limit {
			continue
		}
		cp := &p.Clusters[i]
		for j := range cp.Actions {
			if cp.Actions[j].Decommission {
				block(&cp.Actions[j], fmt.Sprintf("maxDecommissionsPerSync is %d: decommissioned in a later sync", limit), true)
			}
		}
	}
}

// gateMachineChanges spends the fleet's budget of machine creations, drains
// and deletions cluster by cluster, in name order, splitting an action that
// does not fit.
func gateMachineChanges(p *Plan, limit int) {
	budget := max(limit, 0)
	reason := fmt.Sprintf("maxMachineChangesPerSync is %d: done in a later sync", limit)
	for i := range p.Clusters {
		cp := &p.Clusters[i]
		var heldDrains []string
		for j := 0; j < len(cp.Actions); j++ {
			a := &cp.Actions[j]
			if a.Kind == ActionDeleteRancherMachine && !a.ExcludeDrain && a.Runnable() && len(a.Machines) > 0 && slices.Contains(heldDrains, a.Machines[0]) {
				block(a, reason, true)
			}
			n := a.MachineChanges()
			if a.Kind == ActionDrainMachine {
				n = 1
			}
			switch {
			case n == 0 || !a.Runnable():
			case n <= budget:
				budget -= n
			case budget > 0 && (a.Kind == ActionCreateMachines || a.Kind == ActionDeleteMachines):
				// Split: the part that fits runs, the rest waits.
				rest := *a
				a.Machines, rest.Machines = a.Machines[:budget:budget], slices.Clone(a.Machines[budget:])
				if a.IDs != nil {
					a.IDs, rest.IDs = a.IDs[:budget:budget], slices.Clone(a.IDs[budget:])
				}
				budget = 0
				block(&rest, reason, true)
				cp.Actions = slices.Insert(cp.Actions, j+1, rest)
				j++
			default:
				block(a, reason, true)
				if a.Kind == ActionDrainMachine {
					heldDrains = append(heldDrains, a.Machines...)
				}
			}
		}
	}
}
