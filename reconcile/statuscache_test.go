package reconcile_test

import (
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

// TestStatusCacheReadsAsReadStatusFiles pins that a StatusCache returns what
// ReadStatusFiles returns, set and errors, through a sequence of reads where
// files change, break, move, repeat a cluster and disappear.
func TestStatusCacheReadsAsReadStatusFiles(t *testing.T) {
	d, o, lim := bigFleet(20)
	now := t0.Add(time.Hour)
	p := reconcile.Compute(d, o, lim, now)
	base := reconcile.RenderStatus(reconcile.StatusInput{Desired: d, Observed: o, Plan: p, Now: now})
	var first, second string
	for path := range maps.Keys(base) {
		if !strings.HasSuffix(path, ".yaml") {
			continue
		}
		if first == "" || path < first {
			first, second = path, first
		} else if second == "" || path < second {
			second = path
		}
	}
	edit := func(f func(map[string][]byte)) map[string][]byte {
		files := maps.Clone(base)
		f(files)
		return files
	}
	steps := []struct {
		name  string
		files map[string][]byte
	}{
		{"first read", base},
		{"same files", base},
		{"one file changed", edit(func(m map[string][]byte) {
			m[first] = []byte(strings.Replace(string(m[first]), "phase: ", "message: changed\nphase: ", 1))
		})},
		{"one file broken", edit(func(m map[string][]byte) { m[first] = []byte("phase: [") })},
		{"back to the first files", base},
		{"a cluster recorded twice", edit(func(m map[string][]byte) { m["status/other/x.yaml"] = m[first] })},
		{"a file in a subfolder", edit(func(m map[string][]byte) { m["status/a/b/c.yaml"] = m[first] })},
		{"a file gone", edit(func(m map[string][]byte) { delete(m, second) })},
		{"no files", map[string][]byte{}},
		{"all files again", base},
	}
	var c reconcile.StatusCache
	for _, s := range steps {
		want, wantErr := reconcile.ReadStatusFiles(s.files)
		got, gotErr := c.ReadFiles(s.files)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the cache read another set", s.name)
		}
		if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
			t.Errorf("%s: the cache read error %v, want %v", s.name, gotErr, wantErr)
		}
	}
}
