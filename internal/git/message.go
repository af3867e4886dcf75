package git

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxSubjectLen is the length status subjects are kept within, so they stay
// whole in the one-line views of GitLab and GitHub.
const MaxSubjectLen = 72

// ClusterChange is one cluster whose status changed, for a commit message.
type ClusterChange struct {
	// Cluster is "<team>/<cluster>".
	Cluster string
	// Summary is the new state, such as "Ready" or "Ready (workers 5/5)".
	Summary string
}

func (c ClusterChange) String() string {
	if c.Summary == "" {
		return c.Cluster
	}
	return c.Cluster + " " + c.Summary
}

// StatusMessage builds a status commit message from the clusters whose
// status changed, sorted by cluster: the subject says what changed
// ("status: payments/prod Ready, qa/pr-77 Provisioning"), ending with
// "and N more" when the next cluster would make it longer than
// MaxSubjectLen, and the body lists every changed cluster, one per line.
// Without changes (only the summary changed), the subject is
// "status: update summary".
func StatusMessage(changes []ClusterChange) Message {
	if len(changes) == 0 {
		return Message{Subject: "status: update summary"}
	}
	cs := slices.Clone(changes)
	slices.SortStableFunc(cs, func(a, b ClusterChange) int { return strings.Compare(a.Cluster, b.Cluster) })

	subject := subjectOf(cs)
	var body strings.Builder
	for _, c := range cs {
		body.WriteString("- ")
		body.WriteString(oneLine(c.String()))
		body.WriteByte('\n')
	}
	return Message{Subject: subject, Body: body.String()}
}

// oneLine keeps a summary on one line of a commit message.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// subjectOf fits the changes into MaxSubjectLen: every cluster with its
// summary when that fits, else with the summary's first word (the phase),
// else as many clusters as fit followed by "and N more"; a single name too
// long for the line is cut short.
func subjectOf(cs []ClusterChange) string {
	short := func(c ClusterChange) ClusterChange {
		word, _, _ := strings.Cut(strings.TrimSpace(c.Summary), " ")
		return ClusterChange{Cluster: c.Cluster, Summary: word}
	}
	join := func(f func(ClusterChange) ClusterChange) string {
		parts := make([]string, len(cs))
		for i, c := range cs {
			parts[i] = oneLine(f(c).String())
		}
		return "status: " + strings.Join(parts, ", ")
	}
	if s := join(func(c ClusterChange) ClusterChange { return c }); len(s) <= MaxSubjectLen {
		return s
	}
	if s := join(short); len(s) <= MaxSubjectLen {
		return s
	}
	subject := ""
	for i, c := range cs {
		more := ""
		if rest := len(cs) - i - 1; rest > 0 {
			more = fmt.Sprintf(" and %d more", rest)
		}
		item := oneLine(short(c).String())
		next := "status: " + item
		if i > 0 {
			next = subject + ", " + item
		}
		if len(next)+len(more) <= MaxSubjectLen {
			subject = next
			continue
		}
		if i > 0 {
			return subject + fmt.Sprintf(" and %d more", len(cs)-i)
		}
		// Not even the first one fits: its name alone, cut if need be.
		name := "status: " + oneLine(c.Cluster)
		if len(name)+len(more) <= MaxSubjectLen {
			subject = name
			continue
		}
		cut := MaxSubjectLen - len(more) - len("…")
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		return name[:cut] + "…" + more
	}
	return subject
}
