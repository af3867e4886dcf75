package main

// Regression tests of the sync loop's guarantees, run as a user runs them:
// `fleetd apply` and `fleetd plan` on real git repositories, against the
// reconciler's fake providers and Rancher (reconciletest), or against the
// EC2 protocol server where credentials matter.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
)

// fleetRepo is the example fleet in a git repository whose commits carry a
// chosen date, applied through a kept work directory.
type fleetRepo struct {
	t    *testing.T
	dir  string
	work string
	date time.Time // commit date of the next commits; zero: now
	w    *reconciletest.World
}

func newFleetRepo(t *testing.T, created time.Time) *fleetRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git binary not installed")
	}
	r := &fleetRepo{t: t, dir: exampleRepo(t), work: t.TempDir(), date: created, w: reconciletest.NewWorld(time.Now())}
	withFakeWorld(t, r.w)
	r.git("init", "-q", "-b", "main")
	r.git("add", "-A")
	r.git("commit", "-q", "-m", "the fleet")
	return r
}

func (r *fleetRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-C", r.dir, "-c", "user.name=Test", "-c", "user.email=test@example.com"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	if !r.date.IsZero() {
		d := r.date.Format(time.RFC3339)
		cmd.Env = append(cmd.Env, "GIT_AUTHOR_DATE="+d, "GIT_COMMITTER_DATE="+d)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *fleetRepo) edit(path string, f func(string) string) {
	r.t.Helper()
	p := filepath.Join(r.dir, path)
	b, err := os.ReadFile(p)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(f(string(b))), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *fleetRepo) apply(args ...string) (int, string, string) {
	r.t.Helper()
	code, out, stderr := run(r.t, append([]string{"apply", r.dir, "--work-dir", r.work}, args...)...)
	r.w.Settle()
	return code, out, stderr
}

func (r *fleetRepo) converge() {
	r.t.Helper()
	applyUntilConverged(r.t, r.dir, r.w, "--work-dir", r.work)
}

// launchedAt makes every machine's launch time at, as if the fleet had been
// made then: a ttl runs from the later of the creating commit's date and
// the first machine's launch.
func (r *fleetRepo) launchedAt(at time.Time) {
	r.t.Helper()
	for _, f := range clusterFiles(r.t, r.dir) {
		r.w.Launched(strings.TrimSuffix(filepath.Base(f), ".yaml"), at)
	}
}

// live counts the machines of cluster in the fake world that are not being
// deleted.
func (r *fleetRepo) live(cluster string) int {
	n := 0
	for _, m := range r.w.Machines() {
		if m.Cluster == cluster && m.State != reconcile.MachineDeleting {
			n++
		}
	}
	return n
}

func clusterFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "clusters", "*", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("cluster files: %v", err)
	}
	return files
}

// A protected cluster whose file is removed is never decommissioned, even
// when its status file is missing or edited: protection comes from the last
// revision of the file in git history.
func TestRemovedProtectedClusterSurvivesLostOrEditedStatus(t *testing.T) {
	r := newFleetRepo(t, time.Time{})
	r.converge()
	before := r.live("payments-prod")
	r.git("rm", "-q", "clusters/payments/payments-prod.yaml")
	r.git("commit", "-q", "-m", "payments: remove payments-prod")

	// The status branch is gone: nothing records that it was protected.
	r.git("branch", "-q", "-D", "fleet-status")
	for range 3 {
		code, out, stderr := r.apply()
		if code != 0 || !strings.Contains(out, "cluster is protected") {
			t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
		}
	}
	// The status file is edited to say it is not protected.
	r.git("checkout", "-q", "fleet-status")
	r.edit("status/payments/payments-prod.yaml", func(s string) string { return strings.Replace(s, "protected: true\n", "", 1) })
	r.git("commit", "-q", "-am", "status: pretend payments-prod is not protected")
	r.git("checkout", "-q", "main")
	for range 3 {
		if code, out, stderr := r.apply(); code != 0 || !strings.Contains(out, "cluster is protected") {
			t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
		}
	}
	if n := r.live("payments-prod"); n != before || n == 0 {
		t.Fatalf("payments-prod has %d machines, had %d: a protected cluster was decommissioned", n, before)
	}
}

// A cluster the history never declared is never decommissioned: fleetd
// cannot tell whether it was protected.
func TestClusterUnknownToHistoryIsLeftAlone(t *testing.T) {
	r := newFleetRepo(t, time.Time{})
	r.converge()
	// The history is rewritten: a new root commit without data-analytics.
	r.git("rm", "-q", "clusters/data/data-analytics.yaml")
	r.git("checkout", "-q", "--orphan", "rewritten")
	r.git("commit", "-q", "-m", "a fresh history")
	r.git("branch", "-q", "-M", "rewritten", "main")
	for range 3 {
		code, out, stderr := r.apply()
		if code != 0 || !strings.Contains(out, "no cluster file in the history") {
			t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
		}
	}
	if r.live("data-analytics") == 0 {
		t.Fatal("data-analytics was decommissioned without a removal in its history")
	}
}

// One commit that gives every cluster a short TTL is a mass decommission:
// the prune guard holds it until policy.confirmPrune names that commit.
func TestTTLForEveryClusterTripsThePruneGuard(t *testing.T) {
	created := time.Now().Add(-72 * time.Hour)
	r := newFleetRepo(t, created)
	r.converge()
	r.launchedAt(created)
	r.date = time.Time{}
	for _, f := range clusterFiles(t, r.dir) {
		rel, _ := filepath.Rel(r.dir, f)
		r.edit(rel, func(s string) string {
			if strings.Contains(s, "\nttl:") {
				return strings.Replace(s, "\nttl: 48h", "\nttl: 1h", 1)
			}
			return s + "ttl: 1h\n"
		})
	}
	r.git("commit", "-q", "-am", "everyone: ttl 1h")
	cause := r.git("rev-parse", "HEAD")
	counts := map[string]int{}
	for _, f := range clusterFiles(t, r.dir) {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		counts[name] = r.live(name)
	}
	for range 3 {
		code, out, stderr := r.apply()
		if code != 0 || !strings.Contains(out, "prune guard") || !strings.Contains(out, cause) {
			t.Fatalf("apply: exit %d, want the prune guard naming %s\n%s\n%s", code, cause, out, stderr)
		}
	}
	for name, n := range counts {
		if got := r.live(name); got != n {
			t.Fatalf("%s went from %d to %d machines while the prune guard held", name, n, got)
		}
	}
	// A person confirms the commit: decommissions run, one per sync.
	r.edit("fleet.yaml", func(s string) string {
		return strings.Replace(s, "  pruneGuardPercent: 30\n", "  pruneGuardPercent: 30\n  confirmPrune: "+cause+"\n", 1)
	})
	r.git("commit", "-q", "-am", "policy: confirm the TTLs")
	code, out, stderr := r.apply()
	if code != 0 || strings.Contains(out, "prune guard") || !strings.Contains(out, "ttl expired") {
		t.Fatalf("apply after confirmPrune: exit %d\n%s\n%s", code, out, stderr)
	}
	if n := strings.Count(out, "\n  - unregister cluster: ttl expired"); n != 1 {
		t.Errorf("%d clusters started decommissioning in one sync, want 1 (maxDecommissionsPerSync)\n%s", n, out)
	}
	for _, p := range []string{"payments-prod", "platform-tools", "trading-prod"} {
		if r.live(p) != counts[p] {
			t.Errorf("protected %s lost machines", p)
		}
	}
}

// policy.confirmPrune naming the commit that removed many clusters,
// committed after it, releases the guard.
func TestCommittedConfirmPruneReleasesTheGuard(t *testing.T) {
	r := newFleetRepo(t, time.Time{})
	r.converge()
	for _, p := range []string{"clusters/data/data-analytics.yaml", "clusters/data/data-lake.yaml", "clusters/platform/platform-ci.yaml", "clusters/qa/qa-pr-77.yaml"} {
		r.git("rm", "-q", p)
	}
	r.git("commit", "-q", "-m", "remove four clusters")
	cause := r.git("rev-parse", "HEAD")
	code, out, _ := r.apply()
	if code != 0 || !strings.Contains(out, "prune guard: 4 of 9 clusters") {
		t.Fatalf("apply: exit %d\n%s", code, out)
	}
	// The plan tells the truth: the held decommissions cost what they cost
	// now after this sync, and nothing once done; they list their machines.
	_, js, _ := run(t, "plan", r.dir, "-o", "json")
	var p reconcile.Plan
	if err := json.Unmarshal([]byte(js), &p); err != nil {
		t.Fatal(err)
	}
	cp := p.Cluster("data-lake")
	if cp == nil || cp.After != cp.Before || cp.Eventual.Monthly != 0 || len(cp.Removes) != r.live("data-lake") || p.After != p.Before {
		t.Fatalf("held decommission of data-lake: %+v; fleet before %v after %v", cp, p.Before, p.After)
	}
	r.edit("fleet.yaml", func(s string) string {
		return strings.Replace(s, "  pruneGuardPercent: 30\n", "  pruneGuardPercent: 30\n  confirmPrune: "+cause+"\n", 1)
	})
	r.git("commit", "-q", "-am", "policy: confirm the removal")
	if code, out, _ := r.apply(); code != 0 || strings.Contains(out, "prune guard") || !strings.Contains(out, "removed from the fleet repo") {
		t.Fatalf("apply after confirmPrune: exit %d\n%s", code, out)
	}
}

// TTL expiry is the creation commit's time plus the current TTL:
// lengthening a TTL moves the expiry even after status recorded it.
func TestLongerTTLMovesTheExpiry(t *testing.T) {
	created := time.Now().Add(-24 * time.Hour).UTC().Truncate(time.Second)
	r := newFleetRepo(t, created)
	r.converge()
	r.launchedAt(created)
	if code, out, stderr := r.apply(); code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
	}
	if st := r.git("show", "fleet-status:status/qa/qa-pr-77.yaml"); !strings.Contains(st, created.Add(48*time.Hour).Format(time.RFC3339)) {
		t.Fatalf("status of qa-pr-77 lacks its expiry:\n%s", st)
	}
	r.date = time.Time{}
	r.edit("clusters/qa/qa-pr-77.yaml", func(s string) string { return strings.Replace(s, "ttl: 48h", "ttl: 96h", 1) })
	r.git("commit", "-q", "-am", "qa: keep pr-77 longer")
	_, js, stderr := run(t, "plan", r.dir, "-o", "json")
	var p reconcile.Plan
	if err := json.Unmarshal([]byte(js), &p); err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	cp := p.Cluster("qa-pr-77")
	if cp == nil || cp.ExpiresAt == nil || !cp.ExpiresAt.Equal(created.Add(96*time.Hour)) {
		t.Fatalf("qa-pr-77 expires at %v, want %v", cp.ExpiresAt, created.Add(96*time.Hour))
	}
}

// A new temporary cluster shows its expiry in the plan.
func TestPlanShowsANewTemporaryClusterExpiry(t *testing.T) {
	dir := exampleRepo(t)
	gitRepo(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "clusters/qa/qa-pr-90.yaml"), []byte("apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: qa-pr-90\nteam: qa\nprovider: aws-eu\nclass: minimal\nttl: 24h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := run(t, "plan", dir, "--allow-missing-status", "--now", planNow)
	if code != 0 || !strings.Contains(out, "temporary: expires at 2026-03-02T12:00:00Z") {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
}

// The first apply records the world as it left it: the machines it made
// are in the status, and a plan from that status creates nothing again.
func TestFirstApplyRecordsWhatItMade(t *testing.T) {
	r := newFleetRepo(t, time.Time{})
	if code, _, stderr := r.apply(); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, stderr)
	}
	if st := r.git("show", "fleet-status:status/payments/payments-prod.yaml"); !strings.Contains(st, "existing: 3") || strings.Contains(st, "existing: 0") {
		t.Fatalf("status after the first apply:\n%s", st)
	}
	code, out, _ := run(t, "plan", r.dir)
	if code != 0 || !strings.Contains(out, "Machines: 0 to create") {
		t.Fatalf("plan from the first status: exit %d\n%s", code, out)
	}
}

// `fleetd apply` on a directory whose status path is a symbolic link
// refuses to write through it.
func TestApplyRefusesStatusLink(t *testing.T) {
	dir := exampleRepo(t)
	target := t.TempDir()
	if err := os.Symlink(target, filepath.Join(dir, "status")); err != nil {
		t.Fatal(err)
	}
	withFakeWorld(t, reconciletest.NewWorld(time.Now()))
	code, _, stderr := run(t, "apply", dir)
	if code != exitUsage || !strings.Contains(stderr, "symbolic link") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Fatalf("apply wrote %d entries through the link", len(ents))
	}
}

// Wrong AWS credentials: apply exits 2 and says the provider refused them.
func TestApplyWithWrongAWSCredentialsExits2(t *testing.T) {
	ec2 := ec2test.New()
	t.Cleanup(ec2.Close)
	ec2.AddImage("ami-0abcdef1234567890", "/dev/sda1")
	ec2.AddSubnet("subnet-0a1b2c3d4e5f60001", "eu-west-1a")
	dir := t.TempDir()
	write := func(p, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("fleet.yaml", `apiVersion: fleetd.io/v1alpha1
kind: Fleet
name: acme
providers:
  - name: aws-eu
    type: aws
    aws: {region: eu-west-1, subnets: [subnet-0a1b2c3d4e5f60001], image: ami-0abcdef1234567890}
teams:
  - name: qa
sizes:
  small: {aws: {instanceType: m6i.large}}
classes:
  single:
    kubernetesVersion: v1.31.4+rke2r1
    pools:
      - {name: all, roles: [etcd, controlplane, worker], replicas: 1, size: small}
`)
	write("clusters/qa/qa-aws.yaml", "apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: qa-aws\nteam: qa\nprovider: aws-eu\nclass: single\n")
	t.Setenv("AWS_ENDPOINT_URL_EC2", ec2.URL)
	t.Setenv("AWS_ACCESS_KEY_ID", ec2test.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-aws-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-aws-credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_MAX_ATTEMPTS", "1")
	code, out, stderr := run(t, "apply", dir)
	if code != exitUsage || !strings.Contains(stderr, "refused the credentials") {
		t.Fatalf("exit %d, want 2\n%s\n%s", code, out, stderr)
	}
	if strings.Contains(stderr, "not-the-secret") {
		t.Error("the secret key is in the output")
	}
	if n := len(ec2.Instances()); n != 0 {
		t.Errorf("%d instances created", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "status", "qa", "qa-aws.yaml")); err == nil {
		st, _ := os.ReadFile(filepath.Join(dir, "status", "qa", "qa-aws.yaml"))
		if strings.Contains(string(st), "existing: 1") {
			t.Errorf("status claims a machine:\n%s", st)
		}
	}
	fmt.Fprint(os.Stderr, "")
}

// A TTL beyond the maximum (it would overflow a duration and expire at
// once) and a price that is not a finite cost are rejected before anything
// is planned; a valid fleet's JSON plan always encodes.
func TestAbsurdNumbersAreRejected(t *testing.T) {
	for _, c := range []struct{ file, old, repl, want string }{
		{"clusters/qa/qa-pr-77.yaml", "ttl: 48h", "ttl: 999999999d", "at most 3650 days"},
		{"fleet.yaml", "m6i.xlarge: 0.214", "m6i.xlarge: 1.7e308", "too large"},
	} {
		dir := exampleRepo(t)
		p := filepath.Join(dir, c.file)
		b, _ := os.ReadFile(p)
		if !strings.Contains(string(b), c.old) {
			t.Fatalf("%s lacks %q", c.file, c.old)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(b), c.old, c.repl, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out, stderr := run(t, "plan", dir, "-o", "json")
		if code != exitInvalid || out != "" || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d\n%s\n%s", c.repl, code, out, stderr)
		}
	}
}

// A cluster file broken by a commit holds only that cluster, at its last
// valid version from history; the others converge.
func TestBrokenClusterFileIsHeldAtItsLastValidVersion(t *testing.T) {
	r := newFleetRepo(t, time.Time{})
	r.converge()
	before := r.live("payments-staging")
	r.edit("clusters/payments/payments-staging.yaml", func(s string) string { return s + "pools:\n  - name: workers\n    replicas: lots\n" })
	r.edit("clusters/data/data-lake.yaml", func(s string) string { return strings.Replace(s, "replicas: 5", "replicas: 6", 1) })
	r.git("commit", "-q", "-am", "payments: a typo; data: one more worker")
	code, out, stderr := r.apply()
	if code != exitInvalid || !strings.Contains(stderr, "payments-staging.yaml") {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
	}
	r.apply()
	if got := r.live("payments-staging"); got != before {
		t.Errorf("payments-staging has %d machines, had %d: a rejected file changed its cluster", got, before)
	}
	if st := r.git("show", "fleet-status:status/payments/payments-staging.yaml"); !strings.Contains(st, "replicas") || !strings.Contains(st, "diagnostics:") {
		t.Errorf("status of the held cluster does not say why:\n%s", st)
	}
	if !strings.Contains(r.git("show", "fleet-status:status/data/data-lake.yaml"), "workers 6/6") &&
		!strings.Contains(r.git("show", "fleet-status:status/SUMMARY.md"), "workers 6/6") {
		t.Errorf("data-lake did not converge while another file was broken:\n%s", r.git("show", "fleet-status:status/SUMMARY.md"))
	}
}

// Applying a fresh clone continues the status history its origin has: the
// local status branch starts from origin/fleet-status, not as an orphan.
func TestApplyOnAFreshCloneContinuesTheStatusBranch(t *testing.T) {
	r := newFleetRepo(t, time.Time{})
	r.converge()
	clone := filepath.Join(t.TempDir(), "clone")
	r.git("clone", "-q", r.dir, clone)
	r2 := &fleetRepo{t: t, dir: clone, work: t.TempDir(), w: r.w}
	if out := r2.git("branch", "--list", "fleet-status"); out != "" {
		t.Fatalf("the clone has a local status branch: %q", out)
	}
	r2.edit("clusters/data/data-lake.yaml", func(s string) string { return strings.Replace(s, "replicas: 5", "replicas: 6", 1) })
	r2.git("commit", "-q", "-am", "data: one more worker")
	code, out, stderr := r2.apply()
	if code != 0 || !strings.Contains(stderr, "from origin/fleet-status") {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, stderr)
	}
	r2.git("merge-base", "--is-ancestor", "origin/fleet-status", "fleet-status")
}
