package schema

import (
	"os"
	"path/filepath"
	"reflect"
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

// FuzzFastParse checks the fast path of the YAML reader against the full
// parser: whatever fastParse accepts, the full parser reads to the very same
// value.
func FuzzFastParse(f *testing.F) {
	f.Add([]byte(baseCluster))
	f.Add([]byte(baseFleet))
	f.Add([]byte("a: [1, '2', \"3\"]\nb: {c: d, e: 010}\nf:\n- g: 1\n  h: x # c\n"))
	f.Add([]byte("a:\n  - - x\n"))
	f.Add([]byte("a: 'it''s'\nb: -1\nc: .5\nd: ~\ne: yes\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFastParse(t, data)
	})
}

func checkFastParse(t *testing.T, data []byte) {
	t.Helper()
	fast, ok := fastParse(data)
	if !ok {
		return
	}
	doc, perr := parseFull("x.yaml", data)
	if perr != nil {
		t.Fatalf("fastParse read %q, the full parser refuses it: %s", data, perr.msg)
	}
	if !reflect.DeepEqual(fast, doc.root) {
		t.Fatalf("fastParse read %q as\n%#v\nthe full parser as\n%#v", data, fast, doc.root)
	}
}

// TestFastParseAgreesOnTheCorpus runs the fast path check on every file of
// the differential corpus and counts how many it reads itself.
func TestFastParseAgreesOnTheCorpus(t *testing.T) {
	fast := 0
	cases := diffCorpus(t)
	for _, c := range cases {
		checkFastParse(t, []byte(c.text))
		if _, ok := fastParse([]byte(c.text)); ok {
			fast++
		}
	}
	if fast < len(cases)/2 {
		t.Errorf("fastParse read only %d of %d files", fast, len(cases))
	}
}
