package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update to accept):\n%s", name, lineDiff(string(want), string(got)))
	}
}

// lineDiff shows the first differing lines.
func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + strconv.Itoa(i+1) + ":\n- " + w + "\n+ " + g
		}
	}
	return ""
}

// goldenScenario is a fleet of every kind of cluster: converged and
// protected, scaling, rolling to a new version, temporary and expired,
// removed, held with a rejected file, paused, with an unpriced size, and one
// whose apply fails.
func goldenScenario(t *testing.T) *harness {
	h := newHarness(t, true)
	h.roundTrip = true
	h.fleet.F.Spec.Policy.MaxMachineChangesPerSync = intp(6)
	// Two removed clusters and an expired one of nine: under the guard.
	h.fleet.F.Spec.Policy.PruneGuardPercent = intp(50)

	prod := h.add(reconciletest.Cluster{Name: "payments-prod", Team: "payments", Protected: true, Pools: reconciletest.Standard(3, 3),
		Access: []schema.EffectiveAccess{{Group: "cn=payments-oncall,ou=groups,dc=acme,dc=example", Role: "cluster-owner"}}})
	h.existing(prod)
	staging := h.add(reconciletest.Cluster{Name: "payments-staging", Team: "payments", Pools: reconciletest.Standard(1, 1)})
	h.existing(staging)
	h.fleet.Add(reconciletest.Cluster{Name: "payments-staging", Team: "payments", Pools: reconciletest.Standard(1, 3)})

	dev := h.add(reconciletest.Cluster{Name: "trading-dev", Team: "trading", Provider: "dc1", Pools: reconciletest.Standard(1, 2)})
	h.existing(dev)
	h.fleet.Add(reconciletest.Cluster{Name: "trading-dev", Team: "trading", Provider: "dc1", Pools: reconciletest.Standard(1, 2), KubernetesVersion: "v1.32.1+rke2r1"})

	h.add(reconciletest.Cluster{Name: "trading-lab", Team: "trading", Paused: true})

	qa := h.add(reconciletest.Cluster{Name: "qa-pr-77", Team: "qa", TTL: 48 * time.Hour, Pools: []reconciletest.Pool{{Name: "all", Roles: []string{"etcd", "controlplane", "worker"}, Replicas: 1, Size: "medium"}}})
	h.existing(qa)
	h.created["qa-pr-77"] = t0.Add(-48 * time.Hour)
	h.w.Launched("qa-pr-77", t0.Add(-48*time.Hour))
	qa2 := h.add(reconciletest.Cluster{Name: "qa-pr-80", Team: "qa", TTL: 2 * time.Hour, Pools: []reconciletest.Pool{{Name: "all", Roles: []string{"etcd", "controlplane", "worker"}, Replicas: 1, Size: "unpriced"}}})
	h.existing(qa2)
	h.created["qa-pr-80"] = t0.Add(-90 * time.Minute)
	h.w.Launched("qa-pr-80", t0.Add(-90*time.Minute))

	old := h.add(reconciletest.Cluster{Name: "trading-old", Team: "trading", Provider: "dc1"})
	h.existing(old)
	h.fleet.Remove("trading-old")

	held := h.add(reconciletest.Cluster{Name: "payments-batch", Team: "payments", Pools: reconciletest.Standard(1, 1)})
	h.existing(held)
	h.fleet.Remove("payments-batch")
	diags := schema.Diagnostics{{Severity: schema.SeverityError, Path: held.Path, Line: 9, Column: 15, Field: "pools[0].replicas", Check: "schema", Message: "got \"six\", want an integer"}}
	h.fleet.F.Rejected = []schema.RejectedFile{{Path: held.Path, Name: "payments-batch", Team: "payments", Diagnostics: diags}}
	h.held = []reconcile.Held{{Path: held.Path, Last: held, Revision: "1111111111111111111111111111111111111111", Diagnostics: diags}}

	h.add(reconciletest.Cluster{Name: "trading-new", Team: "trading", Provider: "dc1", Pools: reconciletest.Standard(1, 2)})
	h.w.Advance(2 * time.Hour)
	return h
}

func TestGoldenPlan(t *testing.T) {
	h := goldenScenario(t)
	p := h.plan()
	golden(t, "plan.json.golden", must(p.JSON()))
	var txt, md bytes.Buffer
	if err := p.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	golden(t, "plan.txt.golden", txt.Bytes())
	golden(t, "plan.md.golden", md.Bytes())
}

// statusArchive joins status files into one golden text, sorted by path.
func statusArchive(files map[string][]byte) []byte {
	var b bytes.Buffer
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		b.WriteString("-- " + p + " --\n")
		b.Write(files[p])
	}
	return b.Bytes()
}

func TestGoldenStatus(t *testing.T) {
	h := goldenScenario(t)
	h.concurrency = 1
	h.world.Providers["dc1"].(*reconciletest.Provider).CreateFunc = func(context.Context, []reconcile.MachineSpec) ([]reconcile.Machine, error) {
		return nil, reconcile.Stalled(errors.New("vsphere: clone trading-new-control-b99d9-0: template ubuntu not found"))
	}
	// First sync: the previous status for the second.
	res := h.run(h.desired(), nil, h.w.Now())
	prev := readBack(t, res.Status)
	h.w.Settle()
	h.w.Advance(10 * time.Minute)
	res = h.run(h.desired(), prev, h.w.Now())
	golden(t, "status.golden", statusArchive(res.Status))
}

func readBack(t *testing.T, files map[string][]byte) *reconcile.StatusSet {
	t.Helper()
	fsys := fstest.MapFS{}
	for p, b := range files {
		fsys[p] = &fstest.MapFile{Data: b}
	}
	set, err := reconcile.ReadStatus(fsys)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestStatusRoundTrip renders status, parses it and renders it again.
func TestStatusRoundTrip(t *testing.T) {
	h := goldenScenario(t)
	h.dryRun = true
	res := h.run(h.desired(), nil, h.w.Now())
	set := readBack(t, res.Status)
	sts := reconcile.ComputeStatus(reconcile.StatusInput{Desired: h.desired(), Observed: res.Observed, Plan: res.Plan, Now: h.w.Now()})
	if len(sts) != len(set.Clusters) {
		t.Fatalf("%d statuses, %d read back", len(sts), len(set.Clusters))
	}
	// Compare the structs, through encoding/json rather than the status
	// writer: a field the writer forgets differs here.
	for _, st := range sts {
		got, want := must(json.MarshalIndent(set.Clusters[st.Cluster], "", " ")), must(json.MarshalIndent(st, "", " "))
		if !bytes.Equal(got, want) {
			t.Errorf("%s does not round-trip:\n%s", st.Cluster, lineDiff(string(want), string(got)))
		}
	}
	// Planning from the status gives the plan of the live world.
	fromStatus := set.Observed()
	// Status also records the templates of machines no longer in the repo;
	// a sync takes them from the previous status the same way.
	res.Observed.Templates = fromStatus.Templates
	live := reconcile.Compute(h.desired(), res.Observed, h.fleet.F.Spec.Policy.Limits(), h.w.Now())
	replay := reconcile.Compute(h.desired(), fromStatus, h.fleet.F.Spec.Policy.Limits(), h.w.Now())
	if a, b := string(must(live.JSON())), string(must(replay.JSON())); a != b {
		t.Errorf("plan from status differs from the live plan:\n%s", lineDiff(a, b))
	}
}

func TestStatusConditionTimes(t *testing.T) {
	h := newHarness(t, false)
	h.add(reconciletest.Cluster{Name: "a"})
	run := func(prev *reconcile.StatusSet) (*reconcile.StatusSet, syncResult) {
		res := h.run(h.desired(), prev, h.w.Now())
		h.w.Settle()
		h.w.Advance(time.Minute)
		return readBack(t, res.Status), res
	}
	s1, _ := run(nil)
	s2, _ := run(s1)
	s3, res3 := run(s2)
	ready := func(s *reconcile.StatusSet) reconcile.Condition {
		for _, c := range s.Clusters["a"].Conditions {
			if c.Type == reconcile.ConditionReady {
				return c
			}
		}
		t.Fatal("no Ready condition")
		return reconcile.Condition{}
	}
	if ready(s1).Status != "False" || ready(s2).Status != "True" {
		t.Fatalf("Ready went %s → %s", ready(s1).Status, ready(s2).Status)
	}
	if !ready(s2).LastTransitionTime.Equal(t0.Add(time.Minute)) || !ready(s3).LastTransitionTime.Equal(ready(s2).LastTransitionTime) {
		t.Errorf("transition times %v, %v", ready(s2).LastTransitionTime, ready(s3).LastTransitionTime)
	}
	_, res4 := run(s3)
	if !bytes.Equal(res3.Status["status/payments/a.yaml"], res4.Status["status/payments/a.yaml"]) {
		t.Error("an unchanged cluster's status file changed")
	}
}

func TestDecommissionedStatusIsReportedOnce(t *testing.T) {
	h := newHarness(t, false)
	h.existing(h.add(reconciletest.Cluster{Name: "a"}))
	for _, n := range []string{"b", "c", "d"} {
		h.existing(h.add(reconciletest.Cluster{Name: n}))
	}
	h.sync()
	h.fleet.Remove("a")
	var phases []string
	for range 4 {
		h.sync()
		if b, ok := h.status["status/payments/a.yaml"]; ok {
			phases = append(phases, strings.TrimPrefix(strings.Split(strings.SplitAfter(string(b), "phase: ")[1], "\n")[0], ""))
		} else {
			phases = append(phases, "-")
		}
	}
	if want := []string{"Decommissioning", "Decommissioned", "-", "-"}; !slices.Equal(phases, want) {
		t.Errorf("phases %v, want %v", phases, want)
	}
}

func TestInvalidFleetKeepsStatus(t *testing.T) {
	h := newHarness(t, true)
	h.existing(h.add(reconciletest.Cluster{Name: "a"}))
	h.existing(h.add(reconciletest.Cluster{Name: "b"}))
	res := h.sync()
	before := res.Status
	// fleet.yaml breaks: nothing is planned, the cluster files stay as
	// they were, SUMMARY.md says why.
	good := h.fleet.F
	h.fleet.F = nil
	d := reconcile.Desired{Revision: "badbadbad", Diagnostics: schema.Diagnostics{{Severity: schema.SeverityError, Path: "fleet.yaml", Line: 1, Column: 1, Message: "broken"}}}
	res = h.run(d, h.prev, h.w.Now())
	if res.Plan.HasChanges() || len(h.w.Calls()) == 0 {
		t.Fatal("an invalid fleet changed something, or nothing was observed")
	}
	for p, b := range before {
		if p == "status/SUMMARY.md" {
			if !bytes.Contains(res.Status[p], []byte("**Nothing is changed:** fleet.yaml is invalid")) {
				t.Errorf("summary does not say why:\n%s", res.Status[p])
			}
			continue
		}
		if !bytes.Equal(res.Status[p], b) {
			t.Errorf("%s changed:\n%s", p, lineDiff(string(b), string(res.Status[p])))
		}
	}
	h.fleet.F = good
}
