package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleetd/fleetd/internal/daemon"
	"github.com/fleetd/fleetd/reconcile"
)

// Metrics is fleetd's set of metrics, registered in a registry of its own
// (never the global one), so two daemons in one test process never share a
// counter. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	syncDuration  *prometheus.HistogramVec
	syncs         *prometheus.CounterVec
	actions       *prometheus.CounterVec
	clusters      *prometheus.GaugeVec
	machines      *prometheus.GaugeVec
	costs         *prometheus.GaugeVec
	lastSuccess   prometheus.Gauge
	webhooks      *prometheus.CounterVec
	refused       *prometheus.CounterVec
	fetchDuration prometheus.Histogram
	providerCalls *prometheus.CounterVec
	providerErrs  *prometheus.CounterVec
	leader        prometheus.Gauge
	clusterStates *clusterStates
	held          *prometheus.GaugeVec
	buildInfo     *prometheus.GaugeVec
	rancherCalls  *prometheus.CounterVec
	rancherErrs   *prometheus.CounterVec

	// gauges serialises the reset-and-set of the gauge vectors, so a
	// scrape never sees half of one sync's values.
	gauges sync.Mutex
}

// New returns fleetd's metrics in a new registry that also holds the Go
// runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fleetd_sync_duration_seconds",
			Help:    "Duration of a sync of the fleet repo, by result.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"result"}),
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_syncs_total",
			Help: "Syncs of the fleet repo, by result (success, requeue, retry, stalled, failed).",
		}, []string{"result"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_actions_total",
			Help: "Actions run by syncs, by action (create-machines, drain-machine, ...) and result (ok, failed, waiting). Actions held back are fleetd_actions_held, not counted here.",
		}, []string{"action", "result"}),
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetd_actions_held",
			Help: "Actions the policy holds back now, by action, as of the last sync.",
		}, []string{"action"}),
		clusterStates: newClusterStates(),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetd_build_info",
			Help: "Always 1; the labels say which build of fleetd runs.",
		}, []string{"version", "revision", "goversion"}),
		rancherCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_rancher_calls_total",
			Help: "Calls to Rancher and, through it, to downstream clusters, by call (clusters, machines, register, join-command, bind, unbind, delete-machine, unregister, node-readiness, drain).",
		}, []string{"call"}),
		rancherErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_rancher_call_errors_total",
			Help: "Calls to Rancher and downstream clusters that returned an error, by call.",
		}, []string{"call"}),
		clusters: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetd_clusters",
			Help: "Clusters of the fleet by status phase, as of the last sync that observed them.",
		}, []string{"phase"}),
		machines: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetd_machines",
			Help: "Machines the fleet owns, by provider and state, as of the last sync that observed them.",
		}, []string{"provider", "state"}),
		costs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetd_cluster_cost_hourly",
			Help: "Cost per hour of each cluster in the pricing currency.",
		}, []string{"team", "cluster"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fleetd_last_successful_sync_timestamp_seconds",
			Help: "Unix time at which the last sync without errors ended.",
		}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_webhook_requests_total",
			Help: "Webhook requests by source (gitlab, github, sync) and result (accepted, ignored, duplicate, ping, unauthorized, bad_request, too_large, ...).",
		}, []string{"source", "result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_webhook_refused_total",
			Help: "Webhook requests refused or acknowledged without a sync, by source and reason (unauthorized, wrong_branch, too_large, over_limit, bad_request, bad_method, stopping).",
		}, []string{"source", "reason"}),
		fetchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fleetd_git_fetch_duration_seconds",
			Help:    "Duration of the git fetch of the fleet repo at the start of a sync.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		providerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_provider_calls_total",
			Help: "Calls to infrastructure providers, by provider and call (list, create, delete).",
		}, []string{"provider", "call"}),
		providerErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetd_provider_call_errors_total",
			Help: "Provider calls that returned an error, by provider and call.",
		}, []string{"provider", "call"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fleetd_leader",
			Help: "1 while this replica holds the leader Lease (or election is off), else 0.",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.syncDuration, m.syncs, m.actions, m.clusters, m.machines, m.costs,
		m.lastSuccess, m.webhooks, m.refused, m.fetchDuration, m.providerCalls, m.providerErrs, m.leader,
		m.clusterStates, m.held, m.buildInfo, m.rancherCalls, m.rancherErrs,
	)
	// Counters with a small known label set start at zero, so that rate()
	// and absent() work before the first event.
	for _, r := range []string{reconcile.ResultSuccess, reconcile.ResultRequeue, reconcile.ResultRetry, reconcile.ResultStalled, reconcile.ResultFailed} {
		m.syncs.WithLabelValues(r)
	}
	return m
}

// SetBuildInfo records which build runs (fleetd_build_info).
func (m *Metrics) SetBuildInfo(version, revision, goVersion string) {
	m.buildInfo.WithLabelValues(version, revision, goVersion).Set(1)
}

// Registry returns the private registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
}

// RecordSync records one sync's outcome; the daemon calls it after each
// sync (it implements daemon.Recorder). Gauge inputs that are nil in o keep
// their last values; non-nil ones replace them, dropping the series of
// clusters, phases and machine states that are gone.
func (m *Metrics) RecordSync(o daemon.Outcome, d time.Duration) {
	result := o.Result()
	m.syncDuration.WithLabelValues(result).Observe(d.Seconds())
	m.syncs.WithLabelValues(result).Inc()
	if o.Succeeded() {
		m.lastSuccess.SetToCurrentTime()
	}
	if o.FetchDuration > 0 {
		m.fetchDuration.Observe(o.FetchDuration.Seconds())
	}
	for _, a := range o.Actions {
		switch a.Result {
		case "ok", "failed", "waiting":
			m.actions.WithLabelValues(a.Action, a.Result).Inc()
		}
	}

	m.gauges.Lock()
	defer m.gauges.Unlock()
	if o.ClusterStates != nil {
		m.clusters.Reset()
		// Every phase has a series, 0 when no cluster is in it, so that
		// a series never vanishes.
		for _, phase := range reconcile.Phases {
			m.clusters.WithLabelValues(string(phase)).Set(0)
		}
		for _, c := range o.ClusterStates {
			m.clusters.WithLabelValues(c.Phase).Inc()
		}
	}
	if o.ClusterStates != nil {
		m.clusterStates.set(o.ClusterStates)
	}
	if o.Held != nil {
		m.held.Reset()
		for action, n := range o.Held {
			m.held.WithLabelValues(action).Set(float64(n))
		}
	}
	if o.Machines != nil {
		m.machines.Reset()
		for _, mc := range o.Machines {
			m.machines.WithLabelValues(mc.Provider, mc.State).Add(float64(mc.N))
		}
	}
	if o.Costs != nil {
		m.costs.Reset()
		for _, c := range o.Costs {
			m.costs.WithLabelValues(c.Team, c.Cluster).Set(c.Hourly)
		}
	}
}

// Webhook results, the values of fleetd_webhook_requests_total's result label.
const (
	WebhookAccepted     = "accepted"     // a sync was queued (or joined a queued one)
	WebhookIgnored      = "ignored"      // valid, but not a push to the tracked branch
	WebhookDuplicate    = "duplicate"    // a GitHub delivery seen before
	WebhookPing         = "ping"         // GitHub's ping
	WebhookUnauthorized = "unauthorized" // bad or missing signature or token
	WebhookBadRequest   = "bad_request"  // malformed body or headers
	WebhookTooLarge     = "too_large"    // body over the limit
	WebhookMethod       = "bad_method"   // not a POST
	WebhookUnavailable  = "unavailable"  // the daemon is stopping
	WebhookOverLimit    = "over_limit"   // too many requests in flight: 503, body unread
)

// Reasons of fleetd_webhook_refused_total.
const (
	RefusedUnauthorized = "unauthorized" // bad or missing signature or token
	RefusedWrongBranch  = "wrong_branch" // a push to a branch other than the tracked one
	RefusedTooLarge     = "too_large"    // body over the limit
	RefusedOverLimit    = "over_limit"   // too many requests in flight
	RefusedBadRequest   = "bad_request"  // malformed body or headers
	RefusedBadMethod    = "bad_method"   // not a POST
	RefusedStopping     = "stopping"     // the daemon is stopping
)

// Webhook counts one webhook request.
func (m *Metrics) Webhook(source, result string) {
	m.webhooks.WithLabelValues(source, result).Inc()
}

// WebhookRefused counts one webhook request refused (or acknowledged
// without a sync) for reason, one of the Refused* constants.
func (m *Metrics) WebhookRefused(source, reason string) {
	m.refused.WithLabelValues(source, reason).Inc()
}

// SetLeader records whether this replica leads.
func (m *Metrics) SetLeader(leading bool) {
	if leading {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}
