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

	subject, full := firstSubject(cs[0], len(cs)-1)
	for i := 1; i < len(cs) && !full; i++ {
		next := subject + ", " + oneLine(cs[i].String())
		rest := len(cs) - i - 1
		more := ""
		if rest > 0 {
			more = fmt.Sprintf(" and %d more", rest)
		}
		if len(next)+len(more) > MaxSubjectLen {
			subject += fmt.Sprintf(" and %d more", len(cs)-i)
			break
		}
		subject = next
	}

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

// firstSubject names the first changed cluster within MaxSubjectLen, leaving
// room for " and N more" when more follow: with its summary when it fits,
// else its name alone, else its name cut short.
// full reports that the subject already says how many more follow.
func firstSubject(c ClusterChange, more int) (subject string, full bool) {
	tail := ""
	if more > 0 {
		tail = fmt.Sprintf(" and %d more", more)
	}
	if s := "status: " + oneLine(c.String()); len(s)+len(tail) <= MaxSubjectLen || (more == 0 && len(s) <= MaxSubjectLen) {
		return s, false
	}
	s := "status: " + oneLine(c.Cluster)
	if len(s)+len(tail) <= MaxSubjectLen {
		return s + tail, more > 0
	}
	cut := MaxSubjectLen - len(tail) - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…" + tail, more > 0
}
