package reconcile

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// RenderSummary returns status/SUMMARY.md: every cluster by team with its
// phase, pools ready/desired, cost and expiry; the cost per team against its
// budget; what is blocked and why; and a pie chart of monthly cost by team.
// Costs are those of the machines that exist.
func RenderSummary(d Desired, p Plan, sts []*ClusterStatus) []byte {
	var b strings.Builder
	b.Grow(256 + 160*len(sts))
	b.WriteString("# Fleet status\n\n")
	b.WriteString("<!-- Written by fleetd: do not edit. -->\n\n")
	ready := 0
	for _, st := range sts {
		if st.Phase == PhaseReady {
			ready++
		}
	}
	fmt.Fprintf(&b, "Spec commit `%s`: %s, %d ready.\n", orNone(shortRev(d.Revision)), count(len(sts), "cluster"), ready)
	if p.Blocked != "" {
		fmt.Fprintf(&b, "\n**Nothing is changed:** %s\n", mdText(p.Blocked))
	}

	// Costs per team from the clusters' status.
	type teamSum struct {
		clusters int
		cost     Cost
		budget   *float64
	}
	teams := map[string]*teamSum{}
	var order []string
	team := func(name string) *teamSum {
		t := teams[name]
		if t == nil {
			t = &teamSum{}
			teams[name] = t
			order = append(order, name)
		}
		return t
	}
	for _, tc := range p.Teams {
		team(tc.Team).budget = tc.BudgetMonthly
	}
	for _, st := range sts {
		t := team(st.Team)
		t.clusters++
		if st.Cost != nil {
			t.cost = addCost(t.cost, *st.Cost)
		}
	}
	slices.Sort(order)

	b.WriteString("\n## Clusters\n\n")
	if len(sts) == 0 {
		b.WriteString("No clusters.\n")
	} else {
		b.WriteString("| Team | Cluster | Phase | Pools ready/desired | Cost/month | Expires |\n")
		b.WriteString("| --- | --- | --- | --- | ---: | --- |\n")
		byTeam := slices.Clone(sts)
		slices.SortFunc(byTeam, func(a, b *ClusterStatus) int {
			return cmp.Or(cmp.Compare(a.Team, b.Team), cmp.Compare(a.Cluster, b.Cluster))
		})
		for _, st := range byTeam {
			writeClusterRow(&b, st)
		}
	}

	b.WriteString("\n## Cost by team\n\n")
	b.WriteString("| Team | Clusters | Cost/month | Budget/month | Used |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: |\n")
	var total Cost
	for _, name := range order {
		t := teams[name]
		total = addCost(total, t.cost)
		budget, used := "", ""
		if t.budget != nil {
			budget = money(*t.budget)
			if *t.budget > 0 {
				used = strconv.Itoa(int(round(t.cost.Monthly / *t.budget * 100, 0))) + "%"
				if t.cost.Monthly > *t.budget {
					used += " **over budget**"
				}
			}
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s |\n", mdCell(name), t.clusters, t.cost.MonthlyText(), budget, used)
	}
	fmt.Fprintf(&b, "| **fleet** | %d | %s | | |\n", len(sts), total.MonthlyText())

	b.WriteString("\n## Blocked\n\n")
	nb := 0
	for _, st := range sts {
		for _, why := range st.Blocked {
			fmt.Fprintf(&b, "- `%s/%s`: %s\n", st.Team, st.Cluster, mdText(why))
			nb++
		}
	}
	if nb == 0 {
		b.WriteString("Nothing is blocked.\n")
	}

	b.WriteString("\n## Monthly cost by team\n\n")
	var pie []string
	for _, name := range order {
		if m := teams[name].cost.Monthly; m > 0 {
			pie = append(pie, fmt.Sprintf("    %q : %s\n", name, money(m)))
		}
	}
	if len(pie) == 0 {
		b.WriteString("No priced machines yet.\n")
	} else {
		b.WriteString("```mermaid\npie title Monthly cost by team\n")
		for _, s := range pie {
			b.WriteString(s)
		}
		b.WriteString("```\n")
	}
	return []byte(b.String())
}

func writeClusterRow(b *strings.Builder, st *ClusterStatus) {
	b.WriteString("| ")
	b.WriteString(mdCell(st.Team))
	b.WriteString(" | ")
	b.WriteString(mdCell(st.Cluster))
	b.WriteString(" | ")
	if st.Phase != PhaseReady {
		b.WriteString("**" + string(st.Phase) + "**")
	} else {
		b.WriteString(string(st.Phase))
	}
	b.WriteString(" | ")
	b.WriteString(poolsReady(st.Pools))
	b.WriteString(" | ")
	if st.Cost != nil {
		b.WriteString(st.Cost.MonthlyText())
	}
	b.WriteString(" | ")
	if st.ExpiresAt != nil {
		b.WriteString(st.ExpiresAt.UTC().Format(time.RFC3339))
	}
	b.WriteString(" |\n")
}

// mdCell makes text safe inside a Markdown table cell (escape.go).
func mdCell(s string) string { return MarkdownText(s) }

// mdText makes text safe on one Markdown line (escape.go).
func mdText(s string) string { return MarkdownText(s) }

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
