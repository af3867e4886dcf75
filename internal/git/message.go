package git

import (
	"fmt"
	"slices"
	"strings"
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

	subject := "status: " + oneLine(cs[0].String())
	for i := 1; i < len(cs); i++ {
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
