package metrics

import (
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetd/fleetd/internal/daemon"
)

// clusterStates serves the per-cluster series, fleetd_cluster_ready and
// fleetd_cluster_condition, from the last sync's cluster states at each
// scrape. Kept as gauge vectors, 10,000 clusters' conditions were some
// 130,000 series held and rebuilt at every sync; built at the scrape they
// cost nothing between scrapes.
type clusterStates struct {
	ready, cond *prometheus.Desc

	mu     sync.Mutex
	states []daemon.ClusterState
}

func newClusterStates() *clusterStates {
	return &clusterStates{
		ready: prometheus.NewDesc("fleetd_cluster_ready",
			"1 when the cluster's Ready condition is True (it serves), else 0, as of the last sync that observed it.",
			[]string{"team", "cluster"}, nil),
		cond: prometheus.NewDesc("fleetd_cluster_condition",
			"The cluster's conditions: 1 for the condition's current status (True or False), 0 for the other.",
			[]string{"team", "cluster", "type", "status"}, nil),
	}
}

// set replaces the states: the series of clusters that are gone go.
func (c *clusterStates) set(states []daemon.ClusterState) {
	c.mu.Lock()
	c.states = states
	c.mu.Unlock()
}

func (c *clusterStates) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	ch <- c.cond
}

func (c *clusterStates) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	states := c.states
	c.mu.Unlock()
	for _, s := range states {
		ready := 0.0
		if s.Conditions["Ready"] == "True" {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, ready, s.Team, s.Cluster)
		types := make([]string, 0, len(s.Conditions))
		for t := range s.Conditions {
			types = append(types, t)
		}
		slices.SortFunc(types, strings.Compare)
		for _, t := range types {
			for _, status := range []string{"True", "False"} {
				v := 0.0
				if s.Conditions[t] == status {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(c.cond, prometheus.GaugeValue, v, s.Team, s.Cluster, t, status)
			}
		}
	}
}
