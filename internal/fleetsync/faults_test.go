package fleetsync_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/fleetsync"
	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

// errPack is what a compaction racing a read looks like to the loader.
var errPack = errors.New("packfile not found")

// faultySource serves the real clone's snapshots with reads that fail:
// the tree (faultFS) and the history (faultHistory) of every snapshot.
type faultySource struct {
	fleetsync.Source
	fs   func(fs.FS) fs.FS
	hist func(fleetsync.History) fleetsync.History
}

func (s *faultySource) Snapshot(ctx context.Context) (*fleetsync.Snapshot, error) {
	snap, err := s.Source.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if s.fs != nil {
		snap.FS = s.fs(snap.FS)
	}
	if s.hist != nil && snap.History != nil {
		snap.History = s.hist(snap.History)
	}
	return snap, nil
}

// faultFS fails, or lies about, the reads of some paths of a tree.
type faultFS struct {
	fs.FS
	failDir  string // ReadDir of it fails
	failOpen string // Open of it fails
	omitDir  string // ReadDir of it answers no entries, without an error
}

func (f faultFS) Open(name string) (fs.File, error) {
	if name == f.failOpen {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errPack}
	}
	return f.FS.Open(name)
}

func (f faultFS) ReadDir(name string) ([]fs.DirEntry, error) {
	switch name {
	case f.failDir:
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errPack}
	case f.omitDir:
		return nil, nil
	}
	return fs.ReadDir(f.FS, name)
}

type faultHistory struct {
	h                  fleetsync.History
	failWalk, failBlob bool
}

func (h faultHistory) History(ctx context.Context, commit, prefix string) (*fgit.History, error) {
	if h.failWalk {
		return nil, errPack
	}
	return h.h.History(ctx, commit, prefix)
}

func (h faultHistory) Blob(ctx context.Context, hash string) ([]byte, error) {
	if h.failBlob {
		return nil, errPack
	}
	return h.h.Blob(ctx, hash)
}

// gitEnv runs git in the remote with extra environment variables.
func (e *env) gitEnv(extra []string, args ...string) {
	e.t.Helper()
	cmd := exec.Command("git", append([]string{"-C", e.remote}, args...)...)
	cmd.Env = append(append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"), extra...)
	if out, err := cmd.CombinedOutput(); err != nil {
		e.t.Fatalf("git %v: %v: %s", args, err, out)
	}
}

func (e *env) machinesOf(cluster string) int {
	n := 0
	for _, m := range e.w.Machines() {
		if m.Cluster == cluster {
			n++
		}
	}
	return n
}

// TestUnreadableTreeDecommissionsNothing injects a failed or lying read at
// every point of load and history, on the loop over a real clone: a team
// folder that cannot be read is missing from the fleet, never removed from
// it. Nothing is decommissioned, the sync fails as a read to retry, the
// result says why, and the next sync with the tree whole is a no-op.
func TestUnreadableTreeDecommissionsNothing(t *testing.T) {
	cases := []struct {
		name string
		fs   func(fs.FS) fs.FS
		hist func(fleetsync.History) fleetsync.History
		// removeFirst removes a team's file before the fault, so a
		// removal is pending and the history's blobs are needed.
		removeFirst bool
	}{
		{name: "team folder", fs: func(f fs.FS) fs.FS { return faultFS{FS: f, failDir: "clusters/trading"} }},
		{name: "clusters folder", fs: func(f fs.FS) fs.FS { return faultFS{FS: f, failDir: "clusters"} }},
		{name: "root", fs: func(f fs.FS) fs.FS { return faultFS{FS: f, failDir: "."} }},
		{name: "cluster file", fs: func(f fs.FS) fs.FS { return faultFS{FS: f, failOpen: "clusters/trading/trading-dev.yaml"} }},
		{name: "fleet.yaml", fs: func(f fs.FS) fs.FS { return faultFS{FS: f, failOpen: schema.FleetFile} }},
		{name: "team folder read as empty", fs: func(f fs.FS) fs.FS { return faultFS{FS: f, omitDir: "clusters/trading"} }},
		{name: "history walk", hist: func(h fleetsync.History) fleetsync.History { return faultHistory{h: h, failWalk: true} }},
		{name: "history blobs", removeFirst: true, hist: func(h fleetsync.History) fleetsync.History { return faultHistory{h: h, failBlob: true} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			src := e.source()
			l := e.loop(src)
			e.converge(l)
			before := len(e.w.Machines())
			dev := e.machinesOf("trading-dev")
			if dev == 0 {
				t.Fatal("trading-dev has no machines after converging")
			}
			if tc.removeFirst {
				// trading-dev's removal needs its last version's blob
				// to tell whether it was protected.
				e.git("rm", "-q", "clusters/trading/trading-dev.yaml")
				e.git("commit", "-q", "-m", "trading: remove trading-dev")
			}
			faulty := e.loop(&faultySource{Source: src, fs: tc.fs, hist: tc.hist})
			for i := range 3 {
				res := faulty.Sync(context.Background())
				if got := len(e.w.Machines()); got != before {
					t.Fatalf("sync %d with an unreadable %s: %d machines, want %d (trading-dev has %d of %d)", i, tc.name, got, before, e.machinesOf("trading-dev"), dev)
				}
				for _, c := range res.Plan.Clusters {
					for _, a := range c.Runnable() {
						if a.Decommission || a.Kind.IsDestructive() {
							t.Fatalf("sync %d with an unreadable %s runs %s on %s", i, tc.name, a.Kind, c.Name)
						}
					}
				}
				if !tc.removeFirst {
					if res.Err == nil || res.Decision.Reaction != reconcile.ReactRetry {
						t.Fatalf("sync %d with an unreadable %s: error %v, reaction %v; want a retry", i, tc.name, res.Err, res.Decision.Reaction)
					}
					if !strings.Contains(res.Err.Error(), "not read whole") && !strings.Contains(res.Err.Error(), errPack.Error()) {
						t.Errorf("sync %d: the error does not say what could not be read: %v", i, res.Err)
					}
				}
				e.w.Settle()
				e.w.Advance(time.Minute)
				e.now = e.now.Add(time.Minute)
			}
			if tc.removeFirst {
				return
			}
			// With the tree whole again, nothing was lost and nothing is to do.
			res := l.Sync(context.Background())
			if res.Err != nil {
				t.Fatalf("sync with the tree whole: %v", res.Err)
			}
			if !res.Plan.Converged() || len(e.w.Machines()) != before {
				t.Fatalf("after the fault: converged %v, %d machines, want %d", res.Plan.Converged(), len(e.w.Machines()), before)
			}
		})
	}
}

// TestBackdatedForcePushExpiresNoTTL re-commits the same tree with
// committer dates of 2001 and force-pushes it: no commit removed or
// shortened the temporary cluster, so it lives out its ttl from when its
// machines were launched.
func TestBackdatedForcePushExpiresNoTTL(t *testing.T) {
	e := newEnv(t)
	l := e.loop(e.source())
	e.converge(l)
	qa := e.machinesOf("qa-pr-77")
	if qa == 0 {
		t.Fatal("qa-pr-77 has no machines")
	}
	e.git("checkout", "-q", "--orphan", "rewritten")
	e.gitEnv([]string{"GIT_COMMITTER_DATE=2001-01-01T00:00:00Z", "GIT_AUTHOR_DATE=2001-01-01T00:00:00Z"},
		"-c", "user.name=Test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "the fleet, backdated")
	e.git("branch", "-q", "-M", "main")
	for i := range 4 {
		res := l.Sync(context.Background())
		if got := e.machinesOf("qa-pr-77"); got != qa {
			t.Fatalf("sync %d after a backdated force-push: qa-pr-77 has %d machines, want %d", i, got, qa)
		}
		for _, c := range res.Plan.Clusters {
			if c.Name == "qa-pr-77" && c.Expired {
				t.Fatalf("sync %d: qa-pr-77 expired at %v after a backdated force-push", i, c.ExpiresAt)
			}
		}
		e.w.Settle()
		e.w.Advance(time.Minute)
		e.now = e.now.Add(time.Minute)
	}
	// Its ttl still runs out, counted from its machines' launch (a dry run
	// that changes nothing, to look at the decision alone).
	e.now = e.now.Add(48 * time.Hour)
	e.w.Advance(48 * time.Hour)
	l.DryRun = true
	res := l.Sync(context.Background())
	expired := false
	for _, c := range res.Plan.Clusters {
		if c.Name == "qa-pr-77" {
			expired = c.Expired
		}
	}
	if !expired {
		t.Fatal("qa-pr-77 does not expire 48h after its machines' launch")
	}
	// Machines that did live for the ttl: the sync that sees a rewrite
	// expires nothing; the one after it decides on the facts.
	e.w.Launched("qa-pr-77", e.now.Add(-72*time.Hour))
	e.gitEnv([]string{"GIT_COMMITTER_DATE=2001-01-02T00:00:00Z", "GIT_AUTHOR_DATE=2001-01-02T00:00:00Z"},
		"-c", "user.name=Test", "-c", "user.email=test@example.com", "commit", "-q", "--amend", "-m", "the fleet, backdated again")
	res = l.Sync(context.Background())
	if cp := res.Plan.Cluster("qa-pr-77"); cp == nil || cp.Expired {
		t.Fatalf("the sync that sees the branch rewritten expires qa-pr-77: %+v", cp)
	}
	if res = l.Sync(context.Background()); res.Plan.Cluster("qa-pr-77") == nil || !res.Plan.Cluster("qa-pr-77").Expired {
		t.Fatal("qa-pr-77, whose machines lived 72h, does not expire in the sync after the rewrite")
	}
}

// TestDeletedOrEditedStatusBranchIsRewritten deletes, then edits, the status
// branch while the fleet is quiet: the next sync writes status back.
func TestDeletedOrEditedStatusBranchIsRewritten(t *testing.T) {
	e := newEnv(t)
	l := e.loop(e.source())
	e.converge(l)
	summary := e.git("show", "fleet-status:status/SUMMARY.md")

	e.git("branch", "-q", "-D", "fleet-status")
	res := l.Sync(context.Background())
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := e.git("show", "fleet-status:status/SUMMARY.md"); got != summary {
		t.Fatalf("after deleting the status branch, the next sync left SUMMARY.md as:\n%s", got)
	}

	// Someone edits a status file on the branch.
	scratch := t.TempDir()
	e.gitEnv(nil, "worktree", "add", "-q", scratch, "fleet-status")
	p := filepath.Join(scratch, "status", "SUMMARY.md")
	if err := os.WriteFile(p, []byte("all good, trust me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.gitEnv(nil, "-C", scratch, "-c", "user.name=Someone", "-c", "user.email=someone@example.com", "commit", "-q", "-am", "edit status")
	e.gitEnv(nil, "worktree", "remove", "--force", scratch)
	if res := l.Sync(context.Background()); res.Err != nil {
		t.Fatal(res.Err)
	}
	if got := e.git("show", "fleet-status:status/SUMMARY.md"); got != summary {
		t.Fatalf("after an edit of the status branch, the next sync left SUMMARY.md as:\n%s", got)
	}
}

// TestThrottledClusterBacksOffAlone throttles every machine creation of one
// cluster: its attempts thin out (1s doubling, jittered), while every other
// cluster converges in the same syncs, and each sync says when the
// throttled cluster is tried again.
func TestThrottledClusterBacksOffAlone(t *testing.T) {
	e := newEnv(t)
	e.w.Inject(func(c reconciletest.Call) error {
		if c.Cluster == "data-lake" && strings.HasSuffix(c.Op, ".Create") {
			return reconcile.Transient(errors.New("RequestLimitExceeded: request limit exceeded"))
		}
		return nil
	})
	l := e.loop(e.source())
	var attempts []time.Time
	seen := 0
	for range 120 {
		res := l.Sync(context.Background())
		for _, c := range e.w.Calls()[seen:] {
			if c.Cluster == "data-lake" && strings.HasSuffix(c.Op, ".Create") {
				attempts = append(attempts, e.now)
			}
		}
		seen = len(e.w.Calls())
		if res.Applied.Cluster("data-lake") == nil && res.Decision.RetryAfter <= 0 {
			t.Fatalf("a sync with data-lake backing off does not say when to sync again (requeue %v)", res.Decision.Requeue)
		}
		e.w.Settle()
		e.w.Advance(time.Second)
		e.now = e.now.Add(time.Second)
	}
	// 120 s of syncs every second: attempts at about 0, 1, 3, 7, 15, 31, 63 s.
	if len(attempts) < 4 || len(attempts) > 9 {
		t.Fatalf("%d attempts to create data-lake's machines in 120 syncs a second apart, want a growing backoff (5 to 8): %v", len(attempts), attempts)
	}
	// Each gap is at least the one before (the jitter is ±20% and the
	// syncs a second apart, so two gaps may round to the same second), and
	// the gaps grow from about a second to half a minute and more.
	for i := 2; i < len(attempts); i++ {
		if prev, cur := attempts[i-1].Sub(attempts[i-2]), attempts[i].Sub(attempts[i-1]); cur < prev {
			t.Errorf("attempt %d came %v after the one before, which came %v after its own: the backoff shrinks", i, cur, prev)
		}
	}
	if first, last := attempts[1].Sub(attempts[0]), attempts[len(attempts)-1].Sub(attempts[len(attempts)-2]); last < 8*first {
		t.Errorf("the gaps between attempts grew from %v to %v only: %v", first, last, attempts)
	}
	for _, name := range []string{"payments-prod", "trading-dev", "qa-pr-77", "platform-ci"} {
		if e.machinesOf(name) == 0 {
			t.Errorf("%s has no machines: one cluster's throttling held it back", name)
		}
	}
	if e.machinesOf("data-lake") != 0 {
		t.Error("data-lake has machines although every creation was refused")
	}
}
