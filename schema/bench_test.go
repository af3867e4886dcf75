package schema

import (
	"fmt"
	"testing"
	"testing/fstest"
)

// BenchmarkLoad loads a generated fleet of 10,000 clusters from memory and
// reports clusters per second. Target: the whole fleet in under a second.
func BenchmarkLoad(b *testing.B) {
	const n = 10000
	fsys := fstest.MapFS{"fleet.yaml": {Data: []byte(baseFleet)}}
	for i := range n {
		team := []string{"payments", "qa"}[i%2]
		fsys[fmt.Sprintf("clusters/%s/c%05d.yaml", team, i)] = &fstest.MapFile{Data: []byte(fmt.Sprintf(
			`apiVersion: fleetd.io/v1alpha1
kind: Cluster
name: c%05d
team: %s
provider: %s
class: standard
pools:
  - name: workers
    replicas: %d
access:
  - group: "cn=ops,ou=groups,dc=acme,dc=example"
    role: cluster-owner
labels: {env: prod, idx: "%d"}
`, i, team, []string{"aws-eu", "dc1"}[i%3%2], 1+i%7, i))}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		fleet, diags := Load(fsys)
		if diags.HasErrors() || len(fleet.Clusters) != n {
			b.Fatalf("clusters = %d, diagnostics:\n%s", len(fleet.Clusters), diags.Error())
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "clusters/s")
}
