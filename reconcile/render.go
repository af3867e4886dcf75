package reconcile

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// planCounts summarizes a plan.
type planCounts struct {
	changes            map[Change]int
	created, removed   int
	blocked, deferred  int
	unchanged, waiting int
}

func countPlan(p *Plan) planCounts {
	c := planCounts{changes: map[Change]int{}}
	for i := range p.Clusters {
		cp := &p.Clusters[i]
		if slices.ContainsFunc(cp.Actions, func(a Action) bool { return a.Runnable() || a.Deferred }) {
			c.changes[cp.Change]++
		}
		if len(cp.Actions) == 0 && len(cp.Waiting) == 0 && cp.Blocked == "" {
			c.unchanged++
		}
		if len(cp.Waiting) > 0 {
			c.waiting++
		}
		cr, rm := machineDelta(cp)
		c.created += cr
		c.removed += rm
		for _, a := range cp.Actions {
			switch {
			case a.Deferred:
				c.deferred++
			case !a.Runnable():
				c.blocked++
			}
		}
	}
	return c
}

// machineDelta counts the machines a cluster's runnable actions add and
// start removing; a runnable decommission removes every machine of the
// cluster, over its steps.
func machineDelta(cp *ClusterPlan) (created, removed int) {
	if cp.Change == ChangeDecommission && hasRunnableDecommission(cp) {
		return 0, len(cp.Removes)
	}
	for _, a := range cp.Actions {
		if !a.Runnable() {
			continue
		}
		switch a.Kind {
		case ActionCreateMachines, ActionReplaceMachine:
			created += len(a.Machines)
		case ActionDrainMachine, ActionDeleteMachines:
			removed += len(a.Machines)
		}
	}
	return created, removed
}

func (c planCounts) headline() string {
	var parts []string
	for _, ch := range []struct {
		c    Change
		verb string
	}{{ChangeCreate, "to create"}, {ChangeUpdate, "to update"}, {ChangeDecommission, "to decommission"}} {
		if n := c.changes[ch.c]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, ch.verb))
		}
	}
	h := "no cluster changes"
	if len(parts) > 0 {
		h = count(c.changes[ChangeCreate]+c.changes[ChangeUpdate]+c.changes[ChangeDecommission], "cluster") + ": " + strings.Join(parts, ", ")
	}
	if c.blocked > 0 {
		h += fmt.Sprintf(", %s held back", count(c.blocked, "action"))
	}
	return h
}

// harm is one line of a plan's top: something the plan destroys or
// disrupts, or holds back.
type harm struct {
	cluster string // team/name
	what    string
	why     string
	// held is why the policy holds it back ("" when it runs).
	held string
	// n counts the actions of the line.
	n int
}

// harms lists what the plan destroys or disrupts (decommissions, machine
// removals and replacements), runnable or held back, and then every other
// action the policy holds back: the top of a plan, never only inside a
// cluster's section.
func harms(p *Plan) (destroys, held []harm) {
	for i := range p.Clusters {
		cp := &p.Clusters[i]
		name := cp.Team + "/" + cp.Name
		decom := cp.Observed && (cp.Removed || cp.Expired) && slices.ContainsFunc(cp.Actions, func(a Action) bool { return a.Decommission })
		if decom {
			why := "its file was removed"
			if cp.Expired && cp.ExpiresAt != nil {
				why = "its ttl ran out at " + cp.ExpiresAt.UTC().Format(time.RFC3339)
			}
			h := harm{cluster: name, what: "decommission, " + count(len(cp.Removes), "machine"), why: why}
			for _, a := range cp.Actions {
				if a.Decommission && !a.Runnable() && !a.Deferred {
					h.held = a.Blocked
					break
				}
			}
			destroys = append(destroys, h)
		}
		for j := range cp.Actions {
			a := &cp.Actions[j]
			switch {
			case decom && a.Decommission:
				// Counted with the decommission above.
			case a.Kind == ActionDeleteMachines || a.Kind == ActionReplaceMachine:
				h := harm{cluster: name, what: a.String(), why: a.Reason}
				if !a.Runnable() && !a.Deferred {
					h.held = a.Blocked
				}
				destroys = append(destroys, h)
			case !a.Runnable() && !a.Deferred && a.Kind != ActionDrainMachine && a.Kind != ActionDeleteRancherMachine:
				// One line per cluster and reason: a paused cluster
				// holds back all its actions for one reason.
				if n := len(held); n > 0 && held[n-1].cluster == name && held[n-1].held == a.Blocked {
					held[n-1].what += "; " + a.String()
					held[n-1].n++
					continue
				}
				held = append(held, harm{cluster: name, what: a.String(), why: a.Reason, held: a.Blocked, n: 1})
			}
		}
	}
	for i := range held {
		if held[i].n > 1 {
			held[i].what = fmt.Sprintf("%d actions (%s)", held[i].n, held[i].what)
		}
	}
	return destroys, held
}

// HeldBack counts the actions the policy holds back (not those deferred to
// a later sync).
func (p *Plan) HeldBack() int { return countPlan(p).blocked }

func symbol(a *Action) string {
	switch {
	case a.Deferred:
		return "~"
	case !a.Runnable():
		return "!"
	case a.Kind.IsDestructive():
		return "-"
	}
	return "+"
}

func costChange(before, after Cost) string {
	s := before.MonthlyText() + " → " + after.MonthlyText()
	if before.Known() && after.Known() {
		s += " (" + signedMoney(after.Monthly-before.Monthly) + ")"
	}
	return s
}

// eventualText says what the cost becomes once held-back actions are done
// too, when that differs from the cost after this sync; "" otherwise.
func eventualText(after, eventual Cost) string {
	if after == eventual {
		return ""
	}
	return eventual.MonthlyText()
}

// WriteText writes the plan for a terminal: a summary, then every cluster with
// something to do, wait for or blocked, with its actions and reasons.
func (p *Plan) WriteText(w io.Writer) error {
	var b strings.Builder
	c := countPlan(p)
	fmt.Fprintf(&b, "Plan for revision %s\n", orNone(shortRev(p.Revision)))
	if p.Observed != "" {
		fmt.Fprintf(&b, "Observed: %s\n", p.Observed)
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "Warning: %s\n", w)
	}
	if p.Blocked != "" {
		fmt.Fprintf(&b, "Nothing is planned: %s\n", p.Blocked)
	}
	fmt.Fprintf(&b, "%s; %d unchanged\n", c.headline(), c.unchanged)
	fmt.Fprintf(&b, "Machines: %d to create, %d to remove\n", c.created, c.removed)
	fmt.Fprintf(&b, "Cost per month: %s after this sync\n", costChange(p.Before, p.After))
	if e := eventualText(p.After, p.Eventual); e != "" {
		fmt.Fprintf(&b, "Cost per month once held-back actions and later steps are done: %s\n", e)
	}
	if c.blocked > 0 || c.deferred > 0 {
		fmt.Fprintf(&b, "Held back: %d blocked, %d deferred to a later sync\n", c.blocked, c.deferred)
	}
	destroys, held := harms(p)
	if len(destroys) > 0 {
		b.WriteString("Destroys:\n")
		for _, h := range destroys {
			fmt.Fprintf(&b, "  - %s: %s (%s)\n", h.cluster, h.what, h.why)
			if h.held != "" {
				fmt.Fprintf(&b, "      held back: %s\n", h.held)
			}
		}
	}
	if len(held) > 0 {
		b.WriteString("Held back by the policy:\n")
		for _, h := range held {
			fmt.Fprintf(&b, "  ! %s: %s: %s\n", h.cluster, h.what, h.held)
		}
	}
	for i := range p.Clusters {
		cp := &p.Clusters[i]
		if len(cp.Actions) == 0 && len(cp.Waiting) == 0 && cp.Blocked == "" && len(cp.Notes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s/%s (%s): %s, cost per month %s", cp.Team, cp.Name, orNone(cp.Provider), cp.Change, costChange(cp.Before, cp.After))
		if e := eventualText(cp.After, cp.Eventual); e != "" {
			fmt.Fprintf(&b, ", %s once held-back actions and later steps are done", e)
		}
		b.WriteString("\n")
		if cp.ExpiresAt != nil && !cp.Expired {
			fmt.Fprintf(&b, "  temporary: expires at %s\n", cp.ExpiresAt.UTC().Format(time.RFC3339))
		}
		if len(cp.Removes) > 0 {
			fmt.Fprintf(&b, "  decommissioning removes %s: %s\n", count(len(cp.Removes), "machine"), strings.Join(cp.Removes, ", "))
		}
		for _, n := range cp.Notes {
			fmt.Fprintf(&b, "  note: %s\n", n)
		}
		if cp.Blocked != "" {
			fmt.Fprintf(&b, "  ! %s\n", cp.Blocked)
		}
		for j := range cp.Actions {
			a := &cp.Actions[j]
			fmt.Fprintf(&b, "  %s %s: %s\n", symbol(a), a.String(), a.Reason)
			if a.Kind == ActionCreateMachines && len(a.Machines) > 0 {
				fmt.Fprintf(&b, "      %s\n", strings.Join(a.Machines, ", "))
			}
			if a.Blocked != "" {
				fmt.Fprintf(&b, "      held back: %s\n", a.Blocked)
			}
		}
		for _, wt := range cp.Waiting {
			fmt.Fprintf(&b, "  . waiting: %s\n", wt)
		}
	}
	_, err := io.WriteString(w, EscapeLines(b.String()))
	return err
}

// WriteMarkdown writes the plan as a merge request comment: a summary with
// the machines and the cost delta, then one section per team with a table of
// its changed clusters and their actions.
func (p *Plan) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	c := countPlan(p)
	fmt.Fprintf(&b, "### fleetd plan for `%s`\n\n", orNone(shortRev(p.Revision)))
	if p.Observed != "" {
		fmt.Fprintf(&b, "Observed: %s\n\n", mdText(p.Observed))
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "> ⚠️ **Warning:** %s\n\n", mdText(w))
	}
	if p.Blocked != "" {
		fmt.Fprintf(&b, "> **Nothing is planned:** %s\n\n", mdText(p.Blocked))
	}
	fmt.Fprintf(&b, "**%s** · machines: +%d −%d · cost/month after this sync: %s", c.headline(), c.created, c.removed, costChange(p.Before, p.After))
	if e := eventualText(p.After, p.Eventual); e != "" {
		fmt.Fprintf(&b, " · once held-back actions and later steps are done: %s", e)
	}
	b.WriteString("\n\n")
	if c.blocked > 0 || c.deferred > 0 {
		fmt.Fprintf(&b, "Held back by policy: %d blocked, %d deferred to a later sync.\n\n", c.blocked, c.deferred)
	}
	destroys, held := harms(p)
	if len(destroys) > 0 {
		b.WriteString("**Destroys:**\n\n")
		for _, h := range destroys {
			fmt.Fprintf(&b, "- 🗑️ `%s`: %s (%s)", h.cluster, mdText(h.what), mdText(h.why))
			if h.held != "" {
				fmt.Fprintf(&b, " — ⛔ **held back:** %s", mdText(h.held))
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	if len(held) > 0 {
		b.WriteString("**Held back by the policy:**\n\n")
		for _, h := range held {
			fmt.Fprintf(&b, "- ⛔ `%s`: %s — %s\n", h.cluster, mdText(h.what), mdText(h.held))
		}
		b.WriteString("\n")
	}
	for _, t := range p.Teams {
		var rows []*ClusterPlan
		for i := range p.Clusters {
			cp := &p.Clusters[i]
			if cp.Team == t.Team && (len(cp.Actions) > 0 || len(cp.Waiting) > 0 || cp.Blocked != "" || len(cp.Notes) > 0) {
				rows = append(rows, cp)
			}
		}
		if len(rows) == 0 && t.Before == t.After && t.After == t.Eventual {
			continue
		}
		fmt.Fprintf(&b, "#### %s\n\n", mdText(t.Team))
		fmt.Fprintf(&b, "Cost/month after this sync: %s", costChange(t.Before, t.After))
		if e := eventualText(t.After, t.Eventual); e != "" {
			fmt.Fprintf(&b, " · once held-back actions and later steps are done: %s", e)
		}
		if t.BudgetMonthly != nil {
			fmt.Fprintf(&b, " · budget %s", money(*t.BudgetMonthly))
			if t.OverBudget() {
				b.WriteString(" · **over budget**")
			}
		}
		b.WriteString("\n\n")
		if len(rows) == 0 {
			continue
		}
		b.WriteString("| Cluster | Change | Machines | Cost/month before | after | Δ |\n")
		b.WriteString("| --- | --- | ---: | ---: | ---: | ---: |\n")
		for _, cp := range rows {
			cr, rm := machineDelta(cp)
			delta := ""
			if cp.Before.Known() && cp.After.Known() {
				delta = signedMoney(cp.After.Monthly - cp.Before.Monthly)
			}
			fmt.Fprintf(&b, "| `%s` | %s | +%d −%d | %s | %s | %s |\n", cp.Name, cp.Change, cr, rm, cp.Before.MonthlyText(), cp.After.MonthlyText(), delta)
		}
		b.WriteString("\n")
		for _, cp := range rows {
			fmt.Fprintf(&b, "<details><summary><code>%s</code>: %s</summary>\n\n", cp.Name, count(len(cp.Actions), "action"))
			if cp.Blocked != "" {
				fmt.Fprintf(&b, "- ⛔ %s\n", mdText(cp.Blocked))
			}
			if cp.ExpiresAt != nil && !cp.Expired {
				fmt.Fprintf(&b, "- ⏲️ temporary: expires at %s\n", cp.ExpiresAt.UTC().Format(time.RFC3339))
			}
			if len(cp.Removes) > 0 {
				fmt.Fprintf(&b, "- decommissioning removes %s: %s\n", count(len(cp.Removes), "machine"), mdText(strings.Join(cp.Removes, ", ")))
			}
			for _, n := range cp.Notes {
				fmt.Fprintf(&b, "- ⚠️ %s\n", mdText(n))
			}
			for j := range cp.Actions {
				a := &cp.Actions[j]
				mark := "✅"
				switch {
				case a.Deferred:
					mark = "⏳"
				case !a.Runnable():
					mark = "⛔"
				case a.Kind.IsDestructive():
					mark = "🗑️"
				}
				fmt.Fprintf(&b, "- %s %s — %s", mark, mdText(a.String()), mdText(a.Reason))
				if a.Blocked != "" {
					fmt.Fprintf(&b, " (**held back:** %s)", mdText(a.Blocked))
				}
				b.WriteString("\n")
			}
			for _, wt := range cp.Waiting {
				fmt.Fprintf(&b, "- ⏱️ waiting: %s\n", mdText(wt))
			}
			b.WriteString("\n</details>\n\n")
		}
	}
	_, err := io.WriteString(w, strings.TrimRight(b.String(), "\n")+"\n")
	return err
}
