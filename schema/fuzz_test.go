package schema

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/fstest"
)

// FuzzLoad feeds arbitrary bytes to the loader as a cluster file (asFleet
// false) or as fleet.yaml (asFleet true). The loader must never panic, must
// locate every diagnostic in a file, and must never accept what it reports
// as an error.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(baseCluster), false)
	f.Add([]byte(baseFleet), true)
	f.Add([]byte(aliasBomb), false)
	f.Add([]byte("a: &a {b: *a}\n"), false)
	f.Add([]byte("<<: {name: x}\nkind: Cluster\n"), false)
	f.Add([]byte("---\n---\n"), true)
	examples, _ := filepath.Glob("../examples/fleet-repo/clusters/*/*.yaml")
	for _, p := range examples {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data, false)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, asFleet bool) {
		fsys := fstest.MapFS{
			"fleet.yaml":                  {Data: []byte(baseFleet)},
			"clusters/payments/fuzz.yaml": {Data: data},
		}
		if asFleet {
			fsys["fleet.yaml"] = &fstest.MapFile{Data: data}
			fsys["clusters/payments/fuzz.yaml"] = &fstest.MapFile{Data: []byte(baseCluster)}
		}
		fleet, diags := Load(fsys)
		if !slices.IsSortedFunc(diags, func(a, b Diagnostic) int {
			if a.Path != b.Path {
				if a.Path < b.Path {
					return -1
				}
				return 1
			}
			return a.Line - b.Line
		}) {
			t.Fatalf("diagnostics not sorted:\n%s", diags.Error())
		}
		for _, d := range diags {
			if d.Path == "" || d.Message == "" || d.Line < 0 {
				t.Fatalf("unlocated diagnostic %+v", d)
			}
		}
		if fleet == nil {
			if !diags.HasErrors() {
				t.Fatal("nil fleet without an error")
			}
			return
		}
		for _, c := range fleet.Clusters {
			for _, d := range diags {
				if d.Path == c.Path && d.Severity == SeverityError {
					t.Fatalf("cluster %s loaded despite error %s", c.Path, d)
				}
			}
		}
	})
}
