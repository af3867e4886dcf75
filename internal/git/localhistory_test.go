package git

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestLocalCreationTimes(t *testing.T) {
	f := newFixture(t)
	t0 := f.clock
	t1 := t0.Add(time.Hour)
	f.commitLocal(t1, "add staging", map[string]string{"clusters/payments/staging.yaml": "name: staging\n"})
	f.commitLocal(t1.Add(time.Hour), "edit prod, remove nothing", map[string]string{"clusters/payments/prod.yaml": "name: prod\nteam: payments\n# edited\n"})
	f.commitLocal(t1.Add(2*time.Hour), "remove staging", map[string]string{"clusters/payments/staging.yaml": ""})
	t3 := t1.Add(3 * time.Hour)
	f.commitLocal(t3, "add staging again", map[string]string{"clusters/payments/staging.yaml": "name: staging\n"})

	got, err := LocalCreationTimes(context.Background(), f.work, "clusters")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]time.Time{"clusters/payments/prod.yaml": t0, "clusters/payments/staging.yaml": t3}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for p, w := range want {
		if !got[p].Equal(w) {
			t.Errorf("%s: created %v, want %v (the edit keeps the time; a re-added file counts anew)", p, got[p], w)
		}
	}

	// From a folder inside the clone, paths are relative to that folder.
	f.commitLocal(t3.Add(time.Hour), "nested fleet", map[string]string{"fleets/eu/clusters/qa/a.yaml": "name: a\n"})
	nested, err := LocalCreationTimes(context.Background(), filepath.Join(f.work, "fleets", "eu"), "clusters")
	if err != nil {
		t.Fatal(err)
	}
	if len(nested) != 1 || !nested["clusters/qa/a.yaml"].Equal(t3.Add(time.Hour)) {
		t.Errorf("nested: %v", nested)
	}

	if _, err := LocalCreationTimes(context.Background(), t.TempDir(), "clusters"); err == nil {
		t.Error("a folder outside any clone: no error")
	}
}
