package daemon

import (
	"errors"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

// TestStatusTellsFetchFromLoad pins what /readyz reads: a revision that
// fetches but does not load is fetched (its time moves on), with the load
// error beside it; a failed fetch keeps the last fetch time and load error.
func TestStatusTellsFetchFromLoad(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	steps := []struct {
		name      string
		o         Outcome
		fetchedAt time.Time
		fetchErr  string
		loadErr   string
	}{
		{"a good sync", Outcome{Revision: "r1", FetchedAt: t0}, t0, "", ""},
		{"an invalid fleet.yaml still fetched", Outcome{Revision: "r2", FetchedAt: t0.Add(time.Minute), LoadError: "fleet.yaml:3:1: bad",
			Err: reconcile.Stalled(errors.New("load: fleet.yaml is invalid"))}, t0.Add(time.Minute), "", "fleet.yaml:3:1: bad"},
		{"a failed fetch keeps the load error", Outcome{FetchError: "fetch: dial tcp: refused", Err: reconcile.Transient(errors.New("fetch"))},
			t0.Add(time.Minute), "fetch: dial tcp: refused", "fleet.yaml:3:1: bad"},
		{"a sync cut short before its fetch changes nothing", Outcome{Err: errors.New("context canceled")},
			t0.Add(time.Minute), "fetch: dial tcp: refused", "fleet.yaml:3:1: bad"},
		{"the fixing commit clears both", Outcome{Revision: "r3", FetchedAt: t0.Add(2 * time.Minute)}, t0.Add(2 * time.Minute), "", ""},
	}
	d := New(SyncerFunc(nil), Options{Logger: quietLogger()})
	for _, s := range steps {
		d.record(s.o, 0, time.Time{})
		st := d.Status()
		if !st.LastFetchedAt.Equal(s.fetchedAt) || st.LastFetchError != s.fetchErr || st.LoadError != s.loadErr {
			t.Errorf("%s: fetched %v, fetch error %q, load error %q; want %v, %q, %q", s.name,
				st.LastFetchedAt, st.LastFetchError, st.LoadError, s.fetchedAt, s.fetchErr, s.loadErr)
		}
	}
}
