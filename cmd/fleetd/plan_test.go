package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

// exampleRepo copies examples/fleet-repo into a temporary directory.
func exampleRepo(t *testing.T) string {
	t.Helper()
	src := filepath.Join("..", "..", "examples", "fleet-repo")
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = runWith(context.Background(), wiringOf(t), args, &out, &errb)
	return code, out.String(), errb.String()
}

const planNow = "2026-03-01T12:00:00Z"

func TestPlanCommand(t *testing.T) {
	dir := exampleRepo(t)
	t.Run("without status it plans the creation of everything", func(t *testing.T) {
		code, out, stderr := run(t, "plan", dir, "--now", planNow)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, want := range []string{"9 clusters: 9 to create", "Machines: 46 to create", "Cost per month: 0.00 → 8976.81 (+8976.81) after this sync", "payments/payments-prod (aws-eu): create"} {
			if !strings.Contains(out, want) {
				t.Errorf("plan lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("detailed exit code says there are changes", func(t *testing.T) {
		if code, _, stderr := run(t, "plan", dir, "--now", planNow, "--detailed-exitcode"); code != exitChanges {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	})
	t.Run("markdown groups by team with the cost delta", func(t *testing.T) {
		_, out, _ := run(t, "plan", dir, "--now", planNow, "-o", "markdown")
		for _, want := range []string{"### fleetd plan", "#### payments", "Cost/month after this sync: 0.00 → 2733.85 (+2733.85) · budget 6000.00", "| `payments-prod` | create | +9 −0 |"} {
			if !strings.Contains(out, want) {
				t.Errorf("markdown lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("json is a plan", func(t *testing.T) {
		_, out, _ := run(t, "plan", dir, "--now", planNow, "-o", "json")
		var p reconcile.Plan
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Clusters) != 9 || !p.HasChanges() {
			t.Errorf("%d clusters", len(p.Clusters))
		}
	})
	t.Run("flags never change the plan", func(t *testing.T) {
		_, a, _ := run(t, "plan", dir, "--now", planNow, "-o", "json")
		_, b, _ := run(t, "plan", dir, "--now", planNow, "-o", "json", "--detailed-exitcode")
		if a != b {
			t.Error("--detailed-exitcode changed the plan")
		}
	})
	t.Run("bad flags are usage errors", func(t *testing.T) {
		for _, args := range [][]string{
			{"plan", dir, "-o", "yaml"},
			{"plan", dir, "--observed", "guess"},
			{"plan", dir, "--now", "yesterday"},
		} {
			if code, _, _ := run(t, args...); code != exitUsage {
				t.Errorf("%v: exit %d", args, code)
			}
		}
	})
	t.Run("live observation needs the Rancher token", func(t *testing.T) {
		// The example fleet reads its token from /etc/fleetd/credentials/rancher-token.
		code, _, stderr := run(t, "plan", dir, "--observed", "live")
		if code != exitUsage || !strings.Contains(stderr, "rancher: token file:/etc/fleetd/credentials/rancher-token") {
			t.Errorf("exit %d: %s", code, stderr)
		}
	})
}

func TestPlanInvalidFleet(t *testing.T) {
	dir := exampleRepo(t)
	p := filepath.Join(dir, "clusters", "payments", "payments-prod.yaml")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, bytes.Replace(b, []byte("replicas: 6"), []byte("replicas: six"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := run(t, "plan", dir)
	if code != exitInvalid {
		t.Fatalf("exit %d", code)
	}
	if out != "" || !strings.Contains(stderr, "payments-prod.yaml:") || !strings.Contains(stderr, "nothing is planned") {
		t.Errorf("stdout %q, stderr %q", out, stderr)
	}
}

// wirings are, by test, the wiring run runs fleetd with (liveWiring when
// none): the commands take their world from it, as main gives them theirs.
var wirings sync.Map

// withFakeWorld makes apply and plan --observed=live of the test's run
// calls use fakes.
func withFakeWorld(t *testing.T, w *reconciletest.World) {
	wr := liveWiring()
	wr.world = func(_ context.Context, f *schema.Fleet, _ *slog.Logger) (reconcile.World, func(context.Context), error) {
		var names []string
		for _, p := range f.Spec.Providers {
			names = append(names, p.Name)
		}
		return w.World(f.Spec.Rancher != nil, names...), func(context.Context) {}, nil
	}
	wirings.Store(t, wr)
	t.Cleanup(func() { wirings.Delete(t) })
}

func wiringOf(t *testing.T) *wiring {
	if wr, ok := wirings.Load(t); ok {
		return wr.(*wiring)
	}
	return liveWiring()
}

// gitRepo makes dir a git repository with its files committed on main and
// returns a function that runs git in it.
func gitRepo(t testing.TB, dir string) func(args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git binary not installed")
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=Test", "-c", "user.email=test@example.com"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	git("add", "-A")
	git("commit", "-q", "-m", "the fleet")
	return git
}

func TestApplyThenPlanFromStatus(t *testing.T) {
	dir := exampleRepo(t)
	git := gitRepo(t, dir)
	work := t.TempDir()
	w := reconciletest.NewWorld(time.Now())
	withFakeWorld(t, w)

	if code, _, stderr := run(t, "apply", dir, "--dry-run", "--work-dir", work); code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, stderr)
	}
	if len(w.Machines()) != 0 {
		t.Fatal("dry run created machines")
	}
	if out := git("branch", "--list", "fleet-status"); out != "" {
		t.Fatal("dry run wrote status")
	}

	// Apply until converged; status commits follow the world.
	applyUntilConverged(t, dir, w, "--work-dir", work)
	if summary := git("show", "fleet-status:status/SUMMARY.md"); !strings.Contains(summary, "9 clusters, 9 ready") {
		t.Fatalf("summary:\n%s", summary)
	}

	// Planning from the recorded status: nothing to do, and it says what it
	// planned against.
	code, out, stderr := run(t, "plan", dir, "--detailed-exitcode")
	if code != 0 || !strings.Contains(out, "Observed: recorded status, fleet-status @ ") {
		t.Fatalf("exit %d: %s%s", code, out, stderr)
	}
	// A change to the repo shows against the status, with its cost.
	p := filepath.Join(dir, "clusters", "payments", "payments-staging.yaml")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, append(b, []byte("pools:\n  - name: workers\n    replicas: 4\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = run(t, "plan", dir, "--detailed-exitcode")
	if code != exitChanges || !strings.Contains(out, "create 2 machines in workers on aws-eu: scale workers 2 → 4") ||
		!strings.Contains(out, "cost per month 390.55 → 702.99 (+312.44)") {
		t.Fatalf("exit %d:\n%s%s", code, out, stderr)
	}
	// The same against the live world.
	if code, out, _ := run(t, "plan", dir, "--observed", "live", "-o", "json"); code != 0 || !strings.Contains(out, "payments-staging-workers-") {
		t.Fatalf("live plan: exit %d", code)
	}
	git("checkout", "-q", "--", ".")

	// A cluster file removed by a commit is decommissioned, and its status
	// file goes once it is gone.
	git("rm", "-q", "clusters/data/data-analytics.yaml")
	git("commit", "-q", "-m", "data: remove data-analytics")
	for range 4 {
		_, out, stderr := run(t, "apply", dir, "--work-dir", work)
		t.Log(out, stderr)
		w.Settle()
	}
	if files := git("ls-tree", "-r", "--name-only", "fleet-status"); strings.Contains(files, "data-analytics") {
		t.Errorf("status of a decommissioned cluster is still there:\n%s", files)
	}
}

func TestApplyReportsFailures(t *testing.T) {
	dir := exampleRepo(t)
	w := reconciletest.NewWorld(time.Now())
	withFakeWorld(t, w)
	w.Inject(reconciletest.FailCluster("trading-dev", errString("vcenter says no")))
	code, _, stderr := run(t, "apply", dir, "--concurrency", "2")
	if code != exitFailed || !strings.Contains(stderr, "cluster trading-dev") || !strings.Contains(stderr, "vcenter says no") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	st, err := os.ReadFile(filepath.Join(dir, "status", "trading", "trading-dev.yaml"))
	if err != nil || !bytes.Contains(st, []byte("phase: Failed")) {
		t.Fatalf("status: %v\n%s", err, st)
	}
	if code, _, _ := run(t, "apply", dir, "--concurrency", "0"); code != exitUsage {
		t.Errorf("--concurrency 0: exit %d", code)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// applyUntilConverged runs fleetd apply on dir against the fake world until
// nothing changes.
func applyUntilConverged(t *testing.T, dir string, w *reconciletest.World, flags ...string) {
	t.Helper()
	for i := 0; ; i++ {
		code, out, stderr := run(t, append([]string{"apply", dir}, flags...)...)
		if code != 0 {
			t.Fatalf("apply %d: exit %d: %s\n%s", i, code, out, stderr)
		}
		if strings.Contains(stderr, "token") && strings.Contains(stderr, "SECRET-TOKEN") {
			t.Fatal("a registration token in the log")
		}
		w.Settle()
		if strings.Contains(out, "no cluster changes; 9 unchanged") {
			return
		}
		if i == 10 {
			t.Fatalf("apply does not converge:\n%s", out)
		}
	}
}

// TestPlanReadsStatusBranch: a fleet that keeps status on its own branch
// plans against origin/<status branch> of the clone, or --status-ref, and
// fails rather than plan against nothing when it cannot be read.
func TestPlanReadsStatusBranch(t *testing.T) {
	dir := exampleRepo(t)
	git := gitRepo(t, dir)
	w := reconciletest.NewWorld(time.Now())
	withFakeWorld(t, w)
	applyUntilConverged(t, dir, w, "--work-dir", t.TempDir())
	// As in a merge request pipeline: the status branch is a remote one.
	git("update-ref", "refs/remotes/origin/fleet-status", git("rev-parse", "fleet-status"))
	git("branch", "-q", "-D", "fleet-status")

	if code, out, stderr := run(t, "plan", dir, "--detailed-exitcode"); code != 0 || !strings.Contains(out, "origin/fleet-status @ ") {
		t.Errorf("plan from origin/fleet-status: exit %d: %s%s", code, out, stderr)
	}
	if code, out, stderr := run(t, "plan", dir, "--detailed-exitcode", "--status-ref", "origin/fleet-status"); code != 0 {
		t.Errorf("plan from --status-ref: exit %d: %s%s", code, out, stderr)
	}
	if code, _, stderr := run(t, "plan", dir, "--status-ref", "no-such-branch"); code != exitUsage || !strings.Contains(stderr, "no-such-branch") {
		t.Errorf("unknown ref: exit %d: %s", code, stderr)
	}
	git("update-ref", "-d", "refs/remotes/origin/fleet-status")
	code, out, stderr := run(t, "plan", dir, "--detailed-exitcode")
	if code != exitUsage || out != "" || !strings.Contains(stderr, "fleet-status cannot be read") || !strings.Contains(stderr, "--allow-missing-status") {
		t.Errorf("without any status: exit %d, want a failure:\n%s%s", code, out, stderr)
	}
	code, out, _ = run(t, "plan", dir, "--detailed-exitcode", "--allow-missing-status")
	if code != exitChanges || !strings.Contains(out, "9 to create") || !strings.Contains(out, "Warning: no recorded status") {
		t.Errorf("--allow-missing-status: exit %d, want a creation plan with a warning:\n%s", code, out)
	}
}

// TestPlanOfAProtectedRemovalIsNotGreen removes a protected cluster's file
// in a merge request: the plan names the held-back decommission at its top
// (text and Markdown), counts it in the headline, and --detailed-exitcode
// exits 3. It exited 0 with the decommission in a collapsed section.
func TestPlanOfAProtectedRemovalIsNotGreen(t *testing.T) {
	dir := exampleRepo(t)
	git := gitRepo(t, dir)
	w := reconciletest.NewWorld(time.Now())
	withFakeWorld(t, w)
	applyUntilConverged(t, dir, w, "--work-dir", t.TempDir())
	git("rm", "-q", "clusters/payments/payments-prod.yaml")
	git("commit", "-q", "-m", "payments: remove payments-prod")

	code, out, stderr := run(t, "plan", dir, "--detailed-exitcode")
	if code != exitHeldBack || !strings.Contains(stderr, "holds back") {
		t.Fatalf("plan of a protected cluster's removal: exit %d, want %d\n%s%s", code, exitHeldBack, out, stderr)
	}
	top, _, _ := strings.Cut(out, "\n\n")
	for _, want := range []string{"actions held back", "Destroys:", "payments/payments-prod: decommission", "held back: cluster is protected: restore its file, or set protected: false"} {
		if !strings.Contains(top, want) {
			t.Errorf("the top of the plan lacks %q:\n%s", want, top)
		}
	}
	_, md, _ := run(t, "plan", dir, "-o", "markdown")
	top, _, _ = strings.Cut(md, "#### ")
	if !strings.Contains(top, "**Destroys:**") || !strings.Contains(top, "`payments/payments-prod`: decommission") || !strings.Contains(top, "**held back:** cluster is protected") {
		t.Errorf("the top of the Markdown plan does not show the held-back decommission:\n%s", top)
	}
	if code, _, _ := run(t, "plan", dir); code != 0 {
		t.Errorf("plan without --detailed-exitcode: exit %d, want 0", code)
	}
}

// TestOneShotCommandsLogOnlyProblems: plan and apply print their result on
// stdout and nothing on stderr when nothing is wrong; -v and --log-level
// bring the sync's log back. Every plan printed "Planned sync" to stderr,
// merge-request job logs included.
func TestOneShotCommandsLogOnlyProblems(t *testing.T) {
	dir := exampleRepo(t)
	gitRepo(t, dir)
	w := reconciletest.NewWorld(time.Now())
	withFakeWorld(t, w)
	work := t.TempDir()
	applyUntilConverged(t, dir, w, "--work-dir", work)
	for _, args := range [][]string{{"plan", dir}, {"apply", dir, "--work-dir", work}} {
		code, out, stderr := run(t, args...)
		if code != 0 || !strings.Contains(out, "no cluster changes") {
			t.Fatalf("%v: exit %d:\n%s%s", args, code, out, stderr)
		}
		if strings.Contains(stderr, "level=INFO") {
			t.Errorf("%v logs at info without -v:\n%s", args, stderr)
		}
		_, _, stderr = run(t, append(args, "-v")...)
		if !strings.Contains(stderr, `level=INFO msg="Planned sync"`) {
			t.Errorf("%v -v does not log the sync:\n%s", args, stderr)
		}
	}
	if code, _, stderr := run(t, "plan", dir, "--log-level", "loud"); code != exitUsage || !strings.Contains(stderr, "--log-level") {
		t.Errorf("plan --log-level loud: exit %d: %s", code, stderr)
	}
}
