package fleetsync_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/reconcile"
)

// TestDesiredHoldsEveryRemovalBeforeObservation removes cluster files in
// commits (one protected, one renamed away, one unreadable) and plans from
// the recorded status only, with nothing observed: the desired state
// already holds the removal facts of every removed file, so they do not
// depend on what a peer answered.
func TestDesiredHoldsEveryRemovalBeforeObservation(t *testing.T) {
	e := newEnv(t)
	e.git("rm", "-q", "clusters/trading/trading-dev.yaml")
	e.git("commit", "-q", "-m", "trading: remove trading-dev")
	devBy := e.git("rev-parse", "HEAD")
	e.git("rm", "-q", "clusters/trading/trading-prod.yaml")
	e.git("commit", "-q", "-m", "trading: remove trading-prod")
	prodBy := e.git("rev-parse", "HEAD")
	// A file whose last version does not parse: which cluster it declared
	// is taken from its name, and whether it was protected is unknown.
	if err := os.WriteFile(filepath.Join(e.remote, "clusters", "data", "data-lake.yaml"), []byte("name: [unclosed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.git("commit", "-q", "-am", "data: break data-lake")
	e.git("rm", "-q", "clusters/data/data-lake.yaml")
	e.git("commit", "-q", "-m", "data: remove data-lake")

	l := e.loop(e.source())
	l.DryRun = true
	res := l.Sync(context.Background())
	if res.Snapshot == nil || !res.Loaded {
		t.Fatalf("sync: %v", res.Err)
	}
	if len(res.Observed.Machines) != 0 {
		t.Fatalf("the world is not empty: %d machines", len(res.Observed.Machines))
	}
	got := res.Desired.Removed
	want := reconcile.Removals{
		"trading-dev":  {Path: "clusters/trading/trading-dev.yaml", By: devBy},
		"trading-prod": {Path: "clusters/trading/trading-prod.yaml", By: prodBy, Protected: true},
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("removal of %s: %+v, want %+v", name, got[name], w)
		}
	}
	lake := got["data-lake"]
	if lake.Unreadable == "" || lake.Protected {
		t.Errorf("removal of the unreadable data-lake: %+v, want it unreadable", lake)
	}
	d := res.Desired
	if why := d.Unproven("data-lake"); !strings.Contains(why, "cannot read whether data-lake was protected") {
		t.Errorf("data-lake unproven: %q", why)
	}
	if why := d.Unproven("trading-dev"); why != "" {
		t.Errorf("trading-dev's removal is proven, but: %q", why)
	}
	if why := d.Unproven("never-declared"); !strings.Contains(why, "no cluster file in the history") {
		t.Errorf("a cluster no file declared: %q", why)
	}
	if d.RemovedBy("trading-prod") != prodBy || d.RemovedBy("never-declared") != d.Revision {
		t.Errorf("RemovedBy: %s, %s", d.RemovedBy("trading-prod"), d.RemovedBy("never-declared"))
	}
	for _, c := range res.Fleet.Clusters {
		if _, ok := got[c.Spec.Name]; ok {
			t.Errorf("%s is declared, but has a removal", c.Spec.Name)
		}
	}
}
