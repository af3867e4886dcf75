package reconcile

import (
	"math"
	"slices"
	"strconv"

	"github.com/fleetd/fleetd/schema"
)

// HoursPerMonth is the cloud providers' convention for a month.
const HoursPerMonth = 730

// Cost is what machines cost, in the pricing currency. Machines without a
// price are counted in Unpriced and left out of the sums: the cost is then
// unknown, and never guessed.
type Cost struct {
	Hourly   float64 `json:"hourly"`
	Monthly  float64 `json:"monthly"`
	Unpriced int     `json:"unpriced,omitempty"`
}

// Known reports whether every machine had a price.
func (c Cost) Known() bool { return c.Unpriced == 0 }

// MonthlyText formats the monthly cost with two decimals, saying when part of
// it is unknown.
func (c Cost) MonthlyText() string {
	switch {
	case c.Unpriced == 0:
		return money(c.Monthly)
	case c.Monthly == 0:
		return "unknown"
	}
	return money(c.Monthly) + " + unknown"
}

// HourlyText formats the hourly cost like MonthlyText.
func (c Cost) HourlyText() string {
	switch {
	case c.Unpriced == 0:
		return money(c.Hourly)
	case c.Hourly == 0:
		return "unknown"
	}
	return money(c.Hourly) + " + unknown"
}

func money(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// signedMoney formats a difference with its sign.
func signedMoney(v float64) string {
	v = round(v, 2)
	if v > 0 {
		return "+" + money(v)
	}
	if v == 0 {
		return "±0.00"
	}
	return money(v)
}

func round(v float64, places int) float64 {
	p := math.Pow10(places)
	r := math.Round(v*p) / p
	if r == 0 {
		return 0 // no negative zero
	}
	return r
}

// costSum accumulates hourly prices before rounding.
type costSum struct {
	hourly   float64
	unpriced int
}

func (s costSum) cost() Cost {
	return Cost{Hourly: round(s.hourly, 4), Monthly: round(s.hourly*HoursPerMonth, 2), Unpriced: s.unpriced}
}

func (s *costSum) add(hourly float64, ok bool, n int) {
	if !ok {
		s.unpriced += n
		return
	}
	s.hourly += hourly * float64(n)
}

// price returns the hourly price of one machine of template t on provider,
// and whether the fleet's pricing knows it.
func (ix *index) price(provider string, t *Template) (float64, bool) {
	if t == nil {
		return 0, false
	}
	pr, ok := ix.pricing[provider]
	if !ok {
		return 0, false
	}
	typ := ix.provType[provider]
	if typ == "" {
		typ = t.providerType()
	}
	switch typ {
	case schema.ProviderAWS:
		v, ok := pr.InstanceHourly[t.Size.InstanceType]
		return v, ok
	case schema.ProviderVSphere:
		if pr.CPUHourly == nil || pr.MemoryGiBHourly == nil || t.Size.CPUs == 0 {
			return 0, false
		}
		return *pr.CPUHourly*float64(t.Size.CPUs) + *pr.MemoryGiBHourly*float64(t.Size.MemoryMiB)/1024, true
	}
	return 0, false
}

// providerType guesses the provider type from the size's fields, for a
// provider no longer in fleet.yaml.
func (t *Template) providerType() string {
	if t.Size.InstanceType != "" {
		return schema.ProviderAWS
	}
	return schema.ProviderVSphere
}

// clusterCost prices the observed machines (before) and the desired pools
// (after) of a cluster.
func (ix *index) clusterCost(pc *pairedCluster, cp *ClusterPlan) {
	var before, after costSum
	for _, pp := range pc.pools {
		for _, v := range pp.machines {
			if v.m.State == MachineDeleting {
				continue
			}
			h, ok := ix.price(v.m.Provider, v.tmpl)
			before.add(h, ok, 1)
		}
	}
	switch {
	case pc.heldNoSpec:
		after = before
	case pc.spec != nil && !pc.expired:
		for _, pp := range pc.pools {
			if pp.spec == nil {
				continue
			}
			h, ok := ix.price(pc.spec.Provider, pp.tmpl)
			after.add(h, ok, pp.spec.Replicas)
		}
	}
	cp.Before, cp.After, cp.Eventual = before.cost(), after.cost(), after.cost()
	if cp.Change == ChangeDecommission {
		for _, m := range pc.machines {
			cp.Removes = append(cp.Removes, m.Name)
		}
	}
}

// costAfterSync prices each cluster as it will be once the plan's runnable
// actions are done: the machines observed, less those a runnable action
// deletes, plus those a runnable action creates. Held-back actions change
// nothing, so a guarded decommission costs what the cluster costs now, and
// the next sync's cost before is this sync's cost after.
func (ix *index) costAfterSync(p *Plan) {
	for i, pc := range ix.clusters {
		cp := &p.Clusters[i]
		if pc.heldNoSpec {
			continue
		}
		deleted := map[string]bool{}
		var after costSum
		for _, a := range cp.Actions {
			if !a.Runnable() {
				continue
			}
			switch a.Kind {
			case ActionDeleteMachines:
				for _, id := range a.IDs {
					deleted[id] = true
				}
			case ActionCreateMachines, ActionReplaceMachine:
				h, ok := ix.price(a.Provider, a.Template)
				after.add(h, ok, len(a.Machines))
			}
		}
		for _, pp := range pc.pools {
			for _, v := range pp.machines {
				if v.m.State == MachineDeleting || deleted[v.m.ID] {
					continue
				}
				h, ok := ix.price(v.m.Provider, v.tmpl)
				after.add(h, ok, 1)
			}
		}
		cp.After = after.cost()
	}
	ix.totals(p)
}

// TeamCost is the cost of one team's clusters.
type TeamCost struct {
	Team          string   `json:"team"`
	Clusters      int      `json:"clusters"`
	Before        Cost     `json:"costBefore"`
	After         Cost     `json:"costAfter"`
	Eventual      Cost     `json:"costEventual"`
	BudgetMonthly *float64 `json:"budgetMonthly,omitempty"`
}

// OverBudget reports whether the cost once the plan is done, held-back
// actions included, exceeds the budget.
func (t TeamCost) OverBudget() bool {
	return t.BudgetMonthly != nil && t.Eventual.Monthly > *t.BudgetMonthly
}

func addCost(a, b Cost) Cost {
	return Cost{Hourly: round(a.Hourly+b.Hourly, 4), Monthly: round(a.Monthly+b.Monthly, 2), Unpriced: a.Unpriced + b.Unpriced}
}

// totals sums cluster costs per team and for the fleet.
func (ix *index) totals(p *Plan) {
	teams := map[string]*TeamCost{}
	var names []string
	get := func(name string) *TeamCost {
		t := teams[name]
		if t == nil {
			t = &TeamCost{Team: name}
			teams[name] = t
			names = append(names, name)
		}
		return t
	}
	p.Before, p.After, p.Eventual = Cost{}, Cost{}, Cost{}
	if ix.fleet != nil {
		for _, t := range ix.fleet.Spec.Teams {
			get(t.Name).BudgetMonthly = t.BudgetMonthly
		}
	}
	for i := range p.Clusters {
		cp := &p.Clusters[i]
		t := get(cp.Team)
		t.Clusters++
		t.Before = addCost(t.Before, cp.Before)
		t.After = addCost(t.After, cp.After)
		t.Eventual = addCost(t.Eventual, cp.Eventual)
		p.Before = addCost(p.Before, cp.Before)
		p.After = addCost(p.After, cp.After)
		p.Eventual = addCost(p.Eventual, cp.Eventual)
	}
	slices.Sort(names)
	p.Teams = make([]TeamCost, 0, len(names))
	for _, n := range names {
		p.Teams = append(p.Teams, *teams[n])
	}
}
