package reconcile_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
)

// FuzzObservedFromStatus feeds arbitrary bytes to the status reader, which
// reads files anyone with write access to the fleet repo can change. It must
// never panic, must name the file in every error, and what it accepts must
// plan without panicking and write back to itself.
func FuzzObservedFromStatus(f *testing.F) {
	if b, err := os.ReadFile("testdata/status.golden"); err == nil {
		for _, part := range strings.Split(string(b), "\n-- ") {
			if _, body, ok := strings.Cut(part, " --\n"); ok && !strings.Contains(part, "SUMMARY.md") {
				f.Add([]byte(body))
			}
		}
	}
	f.Add([]byte("apiVersion: fleetd.io/v1alpha1\nkind: ClusterStatus\ncluster: pay\nteam: payments\nphase: Ready\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("{"))
	const path = "status/payments/pay.yaml"
	fleet := reconciletest.NewFleet(true)
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := fstest.MapFS{path: &fstest.MapFile{Data: data}}
		o, err := reconcile.ObservedFromStatus(fsys)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		p := reconcile.Compute(reconcile.Desired{Fleet: fleet.F, Revision: "r"}, o, fleet.F.Spec.Policy.Limits(), now)
		if _, err := p.JSON(); err != nil {
			t.Fatal(err)
		}
		set, err := reconcile.ReadStatus(fsys)
		if err != nil {
			t.Fatal(err)
		}
		st := set.Clusters["pay"]
		if st == nil {
			t.Fatal("accepted a status without its cluster")
		}
		once := reconcile.MarshalStatus(st)
		again, err := reconcile.ReadStatus(fstest.MapFS{path: &fstest.MapFile{Data: once}})
		if err != nil {
			t.Fatalf("written status does not read back: %v\n%s", err, once)
		}
		if twice := reconcile.MarshalStatus(again.Clusters["pay"]); !bytes.Equal(once, twice) {
			t.Fatalf("status does not round-trip:\n%s\n---\n%s", once, twice)
		}
	})
}

func TestReadStatusErrors(t *testing.T) {
	good := "apiVersion: fleetd.io/v1alpha1\nkind: ClusterStatus\ncluster: pay\nteam: payments\nphase: Ready\n"
	cases := []struct {
		name string
		fs   fstest.MapFS
		want string
	}{
		{"missing status is empty", fstest.MapFS{"fleet.yaml": {}}, ""},
		{"summary and other top files are not read", fstest.MapFS{"status/SUMMARY.md": {Data: []byte("# x")}, "status/payments/pay.yaml": {Data: []byte(good)}}, ""},
		{"unknown field", fstest.MapFS{"status/payments/pay.yaml": {Data: []byte(good + "extra: 1\n")}}, `status/payments/pay.yaml: invalid status: at the top: unknown field "extra"`},
		{"wrong kind", fstest.MapFS{"status/payments/pay.yaml": {Data: []byte(strings.Replace(good, "ClusterStatus", "Cluster", 1))}}, "status/payments/pay.yaml: apiVersion"},
		{"file of another cluster", fstest.MapFS{"status/payments/other.yaml": {Data: []byte(good)}}, `status/payments/other.yaml: holds cluster "pay" of team "payments", but the file is for payments/other`},
		{"too deep", fstest.MapFS{"status/payments/x/pay.yaml": {Data: []byte(good)}}, "status/payments/x: unexpected folder"},
		{"too large", fstest.MapFS{"status/payments/pay.yaml": {Data: append([]byte(good+"#"), bytes.Repeat([]byte("x"), 1<<20)...)}}, "larger than"},
		{"not YAML", fstest.MapFS{"status/payments/pay.yaml": {Data: []byte("\t{")}}, "status/payments/pay.yaml: invalid YAML"},
		{"machine without id", fstest.MapFS{"status/payments/pay.yaml": {Data: []byte(good + "pools:\n  - name: w\n    desired: 1\n    existing: 1\n    ready: 0\n    machines:\n      - name: m\n        provider: aws-eu\n        state: running\n        ready: false\n        template: x\n        createdAt: \"2026-01-01T00:00:00Z\"\n")}}, "id and provider are required"},
		{"forged template", fstest.MapFS{"status/payments/pay.yaml": {Data: []byte(good + "templates:\n  - hash: abc\n    provider: aws-eu\n    kubernetesVersion: v1\n    roles: [worker]\n    size: {instanceType: m6i.large}\n")}}, "does not match the template"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := reconcile.ObservedFromStatus(c.fs)
			switch {
			case c.want == "" && err != nil:
				t.Fatal(err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}
