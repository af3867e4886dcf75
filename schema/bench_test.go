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

// idFS is a MapFS whose files have content IDs, as a git tree's blobs do.
type idFS struct {
	fstest.MapFS
	ids map[string]string
}

func (f idFS) ContentID(p string) (string, error) { return f.ids[p], nil }

// BenchmarkLoadCached loads a fleet of 10,000 clusters through a parse cache
// after one file changed, as the daemon does after a push.
func BenchmarkLoadCached(b *testing.B) {
	const n = 10000
	fsys := idFS{fstest.MapFS{"fleet.yaml": {Data: []byte(baseFleet)}}, map[string]string{"fleet.yaml": "f"}}
	body := func(i, rev int) []byte {
		team := []string{"payments", "qa"}[i%2]
		return fmt.Appendf(nil, "apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: c%05d\nteam: %s\nprovider: aws-eu\nclass: standard\nlabels: {rev: \"%d\"}\n", i, team, rev)
	}
	path := func(i int) string { return fmt.Sprintf("clusters/%s/c%05d.yaml", []string{"payments", "qa"}[i%2], i) }
	for i := range n {
		fsys.MapFS[path(i)] = &fstest.MapFile{Data: body(i, 0)}
		fsys.ids[path(i)] = fmt.Sprintf("%d-0", i)
	}
	var cache ParseCache
	Load(fsys, WithParseCache(&cache))
	b.ReportAllocs()
	rev := 0
	for b.Loop() {
		rev++
		fsys.MapFS[path(0)] = &fstest.MapFile{Data: body(0, rev)}
		fsys.ids[path(0)] = fmt.Sprintf("0-%d", rev)
		fleet, diags := Load(fsys, WithParseCache(&cache))
		if diags.HasErrors() || len(fleet.Clusters) != n {
			b.Fatalf("clusters = %d, diagnostics:\n%s", len(fleet.Clusters), diags.Error())
		}
	}
}
