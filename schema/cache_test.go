package schema

import (
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

// exampleFS copies the example fleet into memory.
func exampleFS(t *testing.T) fstest.MapFS {
	t.Helper()
	src := os.DirFS("../examples/fleet-repo")
	m := fstest.MapFS{}
	err := fs.WalkDir(src, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || strings.HasPrefix(p, ".") {
			return err
		}
		b, err := fs.ReadFile(src, p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestParseCacheGivesTheSameFleet loads a fleet with and without the cache,
// again after one file changed, and after a file broke: the cache changes
// what is parsed, never what is loaded.
func TestParseCacheGivesTheSameFleet(t *testing.T) {
	fsys := exampleFS(t)
	cache := &ParseCache{}
	check := func(step string, wantMisses int) {
		t.Helper()
		want, wantDiags := Load(fsys)
		got, gotDiags := Load(fsys, WithParseCache(cache))
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotDiags, wantDiags) {
			t.Fatalf("%s: the cached load differs:\n%v\n%v", step, gotDiags, wantDiags)
		}
		if cache.Misses != wantMisses {
			t.Errorf("%s: %d files parsed, want %d (hits %d)", step, cache.Misses, wantMisses, cache.Hits)
		}
	}
	files := 0
	for p := range fsys {
		if strings.HasSuffix(p, ".yaml") {
			files++
		}
	}
	check("first load", files)
	check("same tree", 0)
	p := "clusters/payments/payments-prod.yaml"
	fsys[p] = &fstest.MapFile{Data: []byte(strings.Replace(string(fsys[p].Data), "replicas: 6", "replicas: 7", 1))}
	check("one file changed", 1)
	fsys[p] = &fstest.MapFile{Data: []byte(strings.Replace(string(fsys[p].Data), "replicas: 7", "replicas: lots", 1))}
	check("one file broken", 1)
	check("broken again", 0)
	delete(fsys, p)
	check("file removed", 0)
	// Cached cluster files keep their data, not their values: diagnostics
	// that a change of fleet.yaml brings to them name the same fields at the
	// same positions.
	fleet := string(fsys[FleetFile].Data)
	fsys[FleetFile] = &fstest.MapFile{Data: []byte(strings.Replace(fleet, "  standard:", "  standard2:", 1))}
	check("a class renamed", 1)
	if _, diags := Load(fsys, WithParseCache(cache)); !strings.Contains(diags.Error(), "class") {
		t.Errorf("a class renamed: no diagnostic names it:\n%v", diags)
	}
	fsys[FleetFile] = &fstest.MapFile{Data: []byte(fleet)}
	check("the class back", 1)
}
