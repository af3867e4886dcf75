package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fleetd/fleetd/internal/daemon"
	"github.com/fleetd/fleetd/reconcile"
)

func TestRecordSync(t *testing.T) {
	m := New()
	m.RecordSync(daemon.Outcome{
		Revision:      "abc",
		FetchedAt:     time.Now(),
		FetchDuration: 30 * time.Millisecond,
		Actions:       []daemon.ActionResult{{Action: "create-machines", Result: "ok"}, {Action: "create-machines", Result: "ok"}, {Action: "decommission", Result: "blocked"}},
		ClusterStates: states(map[string]int{"Ready": 3, "Provisioning": 1}),
		Machines:      []daemon.MachineCount{{Provider: "aws-eu", State: "running", N: 7}, {Provider: "dc1", State: "pending", N: 2}},
		Costs:         []daemon.ClusterCost{{Team: "payments", Cluster: "payments-prod", Hourly: 1.5}, {Team: "qa", Cluster: "qa-pr-77", Hourly: 0.25}},
	}, 2*time.Second)

	checks := []struct {
		name string
		got  float64
		want float64
	}{
		{"syncs success", testutil.ToFloat64(m.syncs.WithLabelValues("success")), 1},
		{"syncs failed", testutil.ToFloat64(m.syncs.WithLabelValues("failed")), 0},
		{"actions create ok", testutil.ToFloat64(m.actions.WithLabelValues("create-machines", "ok")), 2},
		{"actions decommission blocked (held, not run: not counted)", testutil.ToFloat64(m.actions.WithLabelValues("decommission", "blocked")), 0},
		{"clusters Ready", testutil.ToFloat64(m.clusters.WithLabelValues("Ready")), 3},
		{"machines aws running", testutil.ToFloat64(m.machines.WithLabelValues("aws-eu", "running")), 7},
		{"cost qa", testutil.ToFloat64(m.costs.WithLabelValues("qa", "qa-pr-77")), 0.25},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if ts := testutil.ToFloat64(m.lastSuccess); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last success timestamp %v", ts)
	}
	if n := testutil.CollectAndCount(m.fetchDuration); n != 1 {
		t.Errorf("fetch histogram has %d series", n)
	}

	// A failed fetch reports nothing about the world: the gauges stay.
	m.RecordSync(daemon.Outcome{Err: errors.New("dial tcp: refused"), Decision: reconcile.Decision{Reaction: reconcile.ReactRetry, Backoff: true}}, time.Second)
	if got := testutil.ToFloat64(m.syncs.WithLabelValues("retry")); got != 1 {
		t.Errorf("syncs retry = %v", got)
	}
	if n := testutil.CollectAndCount(m.costs); n != 2 {
		t.Errorf("a failed sync dropped cost series: %d left", n)
	}

	// The next good sync no longer has qa-pr-77: its series goes.
	m.RecordSync(daemon.Outcome{
		ClusterStates: states(map[string]int{"Ready": 4}),
		Machines:      []daemon.MachineCount{},
		Costs:         []daemon.ClusterCost{{Team: "payments", Cluster: "payments-prod", Hourly: 1.5}},
	}, time.Second)
	if n := testutil.CollectAndCount(m.costs); n != 1 {
		t.Errorf("cost series of a gone cluster kept: %d series", n)
	}
	// Every phase keeps its series; an empty one reads 0.
	if n := testutil.CollectAndCount(m.clusters); n != len(reconcile.Phases) {
		t.Errorf("%d phase series, want %d", n, len(reconcile.Phases))
	}
	if got := testutil.ToFloat64(m.clusters.WithLabelValues("Provisioning")); got != 0 {
		t.Errorf("the empty Provisioning phase reads %v", got)
	}
	if n := testutil.CollectAndCount(m.machines); n != 0 {
		t.Errorf("machine series kept after an empty observation: %d", n)
	}
}

func TestHandlerServesThePrivateRegistry(t *testing.T) {
	m := New()
	m.Webhook("github", WebhookAccepted)
	m.RecordSync(daemon.Outcome{Err: errors.New("bad spec"), Decision: reconcile.Decision{Reaction: reconcile.ReactStall}}, time.Second)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	for _, want := range []string{
		`fleetd_webhook_requests_total{result="accepted",source="github"} 1`,
		`fleetd_syncs_total{result="stalled"} 1`,
		`fleetd_syncs_total{result="success"} 0`,
		`fleetd_sync_duration_seconds_bucket{result="stalled",le="1"} 1`,
		"go_goroutines",
		"process_cpu_seconds_total",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Two Metrics never share a series.
	if got := testutil.ToFloat64(New().webhooks.WithLabelValues("github", WebhookAccepted)); got != 0 {
		t.Errorf("a new Metrics sees %v webhooks", got)
	}
}

type fakeProvider struct {
	closed bool
	fail   error
}

func (f *fakeProvider) Name() string { return "aws-eu" }
func (f *fakeProvider) List(context.Context) ([]reconcile.Machine, error) {
	return []reconcile.Machine{{Name: "m1"}}, f.fail
}
func (f *fakeProvider) Create(_ context.Context, s []reconcile.MachineSpec) ([]reconcile.Machine, error) {
	return make([]reconcile.Machine, len(s)), nil
}
func (f *fakeProvider) Delete(context.Context, []string) error { return f.fail }
func (f *fakeProvider) Close(context.Context) error            { f.closed = true; return nil }

func TestInstrumentProvider(t *testing.T) {
	m := New()
	inner := &fakeProvider{}
	p := InstrumentProvider(inner, m)
	ctx := context.Background()
	for range 3 {
		if ms, err := p.List(ctx); err != nil || len(ms) != 1 {
			t.Fatalf("List = %v, %v", ms, err)
		}
	}
	if ms, _ := p.Create(ctx, make([]reconcile.MachineSpec, 2)); len(ms) != 2 {
		t.Fatal("Create did not pass the result through")
	}
	inner.fail = errors.New("throttled")
	if err := p.Delete(ctx, []string{"i-1"}); !errors.Is(err, inner.fail) {
		t.Fatalf("Delete error %v not passed through", err)
	}
	_ = p.Name()
	want := map[string]float64{CallList: 3, CallCreate: 1, CallDelete: 1}
	for call, n := range want {
		if got := testutil.ToFloat64(m.providerCalls.WithLabelValues("aws-eu", call)); got != n {
			t.Errorf("calls{%s} = %v, want %v", call, got, n)
		}
	}
	if got := testutil.ToFloat64(m.providerErrs.WithLabelValues("aws-eu", CallDelete)); got != 1 {
		t.Errorf("errors{delete} = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(m.providerCalls); n != 3 {
		t.Errorf("%d call series, want 3 (Name is not a call)", n)
	}
	c, ok := p.(interface{ Close(context.Context) error })
	if !ok {
		t.Fatal("the instrumented provider hides Close")
	}
	_ = c.Close(ctx)
	if !inner.closed {
		t.Error("Close not forwarded")
	}
	if InstrumentProvider(inner, nil) != reconcile.Provider(inner) {
		t.Error("a nil Metrics must return the provider unchanged")
	}
}

// TestClusterSeries: each cluster has a Ready series and its conditions,
// every phase has a series (0 when empty), held-back actions are a gauge of
// what is held now (a held action seen by ten syncs is one, not ten), and
// build info is there.
func TestClusterSeries(t *testing.T) {
	m := New()
	m.SetBuildInfo("v0.3.0", "0123abc", "go1.26.8")
	o := daemon.Outcome{
		ClusterStates: []daemon.ClusterState{
			{Team: "payments", Cluster: "payments-prod", Phase: "Blocked", Conditions: map[string]string{"Ready": "True", "Blocked": "True"}},
			{Team: "qa", Cluster: "qa-pr-77", Phase: "Ready", Conditions: map[string]string{"Ready": "True", "Blocked": "False"}},
		},
		Held:    map[string]int{"delete-machines": 1, "unregister": 1},
		Actions: []daemon.ActionResult{{Action: "delete-machines", Result: "blocked"}},
	}
	for range 10 {
		m.RecordSync(o, time.Second)
	}
	checks := []struct {
		name      string
		got, want float64
	}{

		{"phase Degraded present at 0", testutil.ToFloat64(m.clusters.WithLabelValues("Degraded")), 0},
		{"held delete-machines", testutil.ToFloat64(m.held.WithLabelValues("delete-machines")), 1},
		{"blocked actions not counted as run", testutil.ToFloat64(m.actions.WithLabelValues("delete-machines", "blocked")), 0},
		{"build info", testutil.ToFloat64(m.buildInfo.WithLabelValues("v0.3.0", "0123abc", "go1.26.8")), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.clusters); n != len(reconcile.Phases) {
		t.Errorf("fleetd_clusters has %d series, want one per phase (%d)", n, len(reconcile.Phases))
	}
	want := `
# HELP fleetd_cluster_ready 1 when the cluster's Ready condition is True (it serves), else 0, as of the last sync that observed it.
# TYPE fleetd_cluster_ready gauge
fleetd_cluster_ready{cluster="payments-prod",team="payments"} 1
fleetd_cluster_ready{cluster="qa-pr-77",team="qa"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "fleetd_cluster_ready"); err != nil {
		t.Error(err)
	}
	cond := `
# HELP fleetd_cluster_condition The cluster's conditions: 1 for the condition's current status (True or False), 0 for the other.
# TYPE fleetd_cluster_condition gauge
fleetd_cluster_condition{cluster="payments-prod",status="False",team="payments",type="Blocked"} 0
fleetd_cluster_condition{cluster="payments-prod",status="False",team="payments",type="Ready"} 0
fleetd_cluster_condition{cluster="payments-prod",status="True",team="payments",type="Blocked"} 1
fleetd_cluster_condition{cluster="payments-prod",status="True",team="payments",type="Ready"} 1
fleetd_cluster_condition{cluster="qa-pr-77",status="False",team="qa",type="Blocked"} 1
fleetd_cluster_condition{cluster="qa-pr-77",status="False",team="qa",type="Ready"} 0
fleetd_cluster_condition{cluster="qa-pr-77",status="True",team="qa",type="Blocked"} 0
fleetd_cluster_condition{cluster="qa-pr-77",status="True",team="qa",type="Ready"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(cond), "fleetd_cluster_condition"); err != nil {
		t.Error(err)
	}
	// The cluster is gone: its series go.
	m.RecordSync(daemon.Outcome{ClusterStates: []daemon.ClusterState{}, Held: map[string]int{}}, time.Second)
	if n, err := testutil.GatherAndCount(m.Registry(), "fleetd_cluster_ready"); err != nil || n != 0 {
		t.Errorf("%d ready series of clusters that are gone (%v)", n, err)
	}
}

// states makes n clusters of each phase.
func states(phases map[string]int) []daemon.ClusterState {
	var out []daemon.ClusterState
	for phase, n := range phases {
		for i := range n {
			out = append(out, daemon.ClusterState{Team: "t", Cluster: fmt.Sprintf("%s-%d", strings.ToLower(phase), i), Phase: phase,
				Conditions: map[string]string{"Ready": "True"}})
		}
	}
	return out
}
