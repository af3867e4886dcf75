package fleetsync

import (
	"context"
	"io/fs"
	"time"

	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/schema"
)

// History is what the loop reads from a clone's history: *git.Repo (the
// daemon's kept clone) and *git.Local (a person's clone) provide it.
type History interface {
	History(ctx context.Context, commit, prefix string) (*fgit.History, error)
	Blob(ctx context.Context, hash string) ([]byte, error)
}

// Snapshot is one revision of the fleet repo to sync.
type Snapshot struct {
	// Revision is the commit the desired state is read from ("" outside git);
	// status files record it as the spec commit.
	Revision string
	// Head is the tracked branch's head, which may be a status-only commit
	// on top of Revision.
	Head string
	// Changed reports that Revision differs from the previous snapshot's.
	Changed bool
	// FS is the tree to load.
	FS fs.FS
	// History and HistoryCommit give the safety facts: the first-parent
	// history of HistoryCommit. History is nil when there is none, and
	// HistoryError then says why.
	History       History
	HistoryCommit string
	HistoryError  string
	// Prefix is the path of the fleet repo's root inside the clone ("" when
	// they are the same): history paths carry it.
	Prefix string
	// WorkTree says FS is a person's working directory, which may differ
	// from HistoryCommit's tree: a file the history has and the directory
	// lacks was deleted by that person. Otherwise FS is HistoryCommit's own
	// tree, and a file its history has that the load did not see is a read
	// that failed, never a removal.
	WorkTree bool
	// Rewritten says the tracked branch was force-pushed since the
	// previous snapshot: commit dates cannot be trusted in this sync, so no
	// TTL expires and nothing is decommissioned in it.
	Rewritten bool
	// StatusMoved, when set, says why the recorded status is read again:
	// the status branch is not where fleetd last left it.
	StatusMoved string
	// Describe names the revision for people ("commit 1a2b3c4 of main").
	Describe string
	// FetchDuration is how long fetching took.
	FetchDuration time.Duration
}

// RecordedStatus is the previous status as the source keeps it.
type RecordedStatus struct {
	// Files are the status files keyed by their path in the repo.
	Files map[string][]byte
	// From says where they were read ("origin/fleet-status @ 1a2b3c4",
	// "DIR/status/"); "" when there is no recorded status.
	From string
	// Warning is set when no recorded status was found and the plan runs
	// against an empty world: the output must say it.
	Warning string
}

// Source is where a sync reads the fleet repo and writes status.
type Source interface {
	// Snapshot fetches the repo and returns the revision to sync.
	Snapshot(ctx context.Context) (*Snapshot, error)
	// ReadStatus returns the previous status for the loaded fleet (nil for an
	// invalid fleet.yaml, then the default status branch is used).
	ReadStatus(ctx context.Context, fleet *schema.Fleet) (RecordedStatus, error)
	// WriteStatus makes the recorded status hold exactly files, as one
	// commit with msg where the source keeps status; it reports the commit
	// and whether one was made. Writing the same files again is a no-op.
	WriteStatus(ctx context.Context, fleet *schema.Fleet, files map[string][]byte, msg fgit.Message) (commit string, committed bool, err error)
}

func author(f *schema.Fleet) fgit.Signature {
	if f != nil && f.Spec.Status.Author != nil {
		return fgit.Signature{Name: f.Spec.Status.Author.Name, Email: f.Spec.Status.Author.Email}
	}
	return fgit.Signature{}
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
