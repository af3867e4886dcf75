package fleetsync_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
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

// env is the example fleet in a real git repository (the remote), a kept
// work directory, and the reconciler's fake providers and Rancher.
type env struct {
	t      *testing.T
	remote string
	work   string
	w      *reconciletest.World
	now    time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git binary not installed")
	}
	e := &env{t: t, remote: t.TempDir(), work: t.TempDir(), now: time.Now().UTC().Truncate(time.Second)}
	e.w = reconciletest.NewWorld(e.now)
	if err := os.CopyFS(e.remote, os.DirFS(filepath.Join("..", "..", "examples", "fleet-repo"))); err != nil {
		t.Fatal(err)
	}
	e.git("init", "-q", "-b", "main")
	e.git("add", "-A")
	e.git("commit", "-q", "-m", "the fleet")
	return e
}

func (e *env) git(args ...string) string {
	e.t.Helper()
	cmd := exec.Command("git", append([]string{"-C", e.remote, "-c", "user.name=Test", "-c", "user.email=test@example.com"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// loop is a fleetd process: a new one after every "restart".
func (e *env) loop(src fleetsync.Source) *fleetsync.Loop {
	return &fleetsync.Loop{
		Source: src,
		World: func(_ context.Context, f *schema.Fleet, _ *slog.Logger) (reconcile.World, func(context.Context), error) {
			var names []string
			for _, p := range f.Spec.Providers {
				names = append(names, p.Name)
			}
			return e.w.World(f.Spec.Rancher != nil, names...), func(context.Context) {}, nil
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:    func() time.Time { return e.now },
	}
}

func (e *env) source() *fleetsync.RepoSource {
	src := &fleetsync.RepoSource{Options: fgit.Options{URL: e.remote, Branch: "main", Dir: e.work,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	e.t.Cleanup(func() { _ = src.Close() })
	return src
}

// converge syncs until nothing is left to do, letting time pass. The cost
// a sync promises after it is the cost the next sync finds.
func (e *env) converge(l *fleetsync.Loop) *fleetsync.Result {
	e.t.Helper()
	var prev *fleetsync.Result
	for i := 0; i < 20; i++ {
		res := l.Sync(context.Background())
		if res.Err != nil {
			e.t.Fatalf("sync %d: %v", i, res.Err)
		}
		if prev != nil && prev.Plan.After != res.Plan.Before {
			e.t.Errorf("sync %d: cost after %v, but the next sync finds %v", i-1, prev.Plan.After, res.Plan.Before)
		}
		prev = res
		e.w.Settle()
		e.w.Advance(time.Minute)
		e.now = e.now.Add(time.Minute)
		if res.Plan.Converged() {
			return res
		}
	}
	e.t.Fatal("the fleet does not converge")
	return nil
}

// checkNoTwins fails when two machines share a name.
func (e *env) checkNoTwins() {
	e.t.Helper()
	seen := map[string]bool{}
	for _, m := range e.w.Machines() {
		if seen[m.Name] {
			e.t.Fatalf("twin machine %s", m.Name)
		}
		seen[m.Name] = true
	}
}

// TestLoopConverges is the demo's scenario on the loop: create the fleet,
// merge a scale-up and a removal, and record each step as a status commit.
func TestLoopConverges(t *testing.T) {
	e := newEnv(t)
	l := e.loop(e.source())
	res := e.converge(l)
	if got := len(e.w.Machines()); got != 46 {
		t.Fatalf("%d machines, want 46", got)
	}
	if !strings.Contains(e.git("show", "fleet-status:status/SUMMARY.md"), "9 clusters, 9 ready") {
		t.Fatalf("summary:\n%s", e.git("show", "fleet-status:status/SUMMARY.md"))
	}
	// A sync with nothing new makes no commit.
	head := e.git("rev-parse", "fleet-status")
	if res := l.Sync(context.Background()); res.StatusCommit != "" || e.git("rev-parse", "fleet-status") != head {
		t.Fatalf("a no-op sync committed %s", res.StatusCommit)
	}
	_ = res

	path := filepath.Join(e.remote, "clusters/payments/payments-prod.yaml")
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "    replicas: 6", "    replicas: 8", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.git("rm", "-q", "clusters/trading/trading-dev.yaml")
	e.git("commit", "-q", "-am", "payments: scale payments-prod; trading: remove trading-dev")
	e.converge(l)
	e.checkNoTwins()
	log := e.git("log", "--format=%s", "fleet-status")
	for _, want := range []string{"trading/trading-dev Decommissioned", "payments/payments-prod"} {
		if !strings.Contains(log, want) {
			t.Errorf("status history lacks %q:\n%s", want, log)
		}
	}
	for _, subject := range strings.Split(log, "\n") {
		if len(subject) > fgit.MaxSubjectLen || subject == "status: update summary" {
			t.Errorf("status subject %q", subject)
		}
	}
}

// crashingSource kills the process around the status commit: before it
// (apply done, status not written), or after the push with the reply lost.
type crashingSource struct {
	fleetsync.Source
	afterPush bool
}

var errKilled = errors.New("killed")

func (c *crashingSource) WriteStatus(ctx context.Context, f *schema.Fleet, files map[string][]byte, msg fgit.Message) (string, bool, error) {
	if c.afterPush {
		if _, _, err := c.Source.WriteStatus(ctx, f, files, msg); err != nil {
			return "", false, err
		}
	}
	return "", false, errKilled
}

// TestCrashAroundTheStatusCommit kills fleetd between apply and the status
// commit, and between the push and its reply, on every sync of a converge;
// each restart is a new process on the same work directory. Nothing is
// duplicated and nothing is lost: the world converges with no twin, and the
// status finally records it.
func TestCrashAroundTheStatusCommit(t *testing.T) {
	for _, afterPush := range []bool{false, true} {
		name := "before the commit"
		if afterPush {
			name = "after the push"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			for i := 0; i < 6; i++ {
				src := e.source()
				res := e.loop(&crashingSource{Source: src, afterPush: afterPush}).Sync(context.Background())
				if !errors.Is(res.Err, errKilled) {
					t.Fatalf("sync %d: %v", i, res.Err)
				}
				if res.Decision.Reaction != reconcile.ReactRetry || !res.Decision.Backoff {
					t.Errorf("a failed status push decides %+v, want a retry of the sync with backoff", res.Decision)
				}
				_ = src.Close()
				e.checkNoTwins()
				e.w.Settle()
				e.w.Advance(time.Minute)
				e.now = e.now.Add(time.Minute)
			}
			e.converge(e.loop(e.source()))
			e.checkNoTwins()
			if got := len(e.w.Machines()); got != 46 {
				t.Fatalf("%d machines, want 46", got)
			}
			if !strings.Contains(e.git("show", "fleet-status:status/SUMMARY.md"), "9 clusters, 9 ready") {
				t.Fatal("status does not record the converged fleet")
			}
		})
	}
}
