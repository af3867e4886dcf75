package providertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// Harness is what the suite needs from the provider under test and its endpoint.
type Harness struct {
	// NewProvider returns a provider for the fleet named fleet, talking to the
	// test endpoint. The suite calls it more than once (a second fleet name
	// plays a foreign fleet).
	NewProvider func(t *testing.T, fleet string) reconcile.Provider
	// CreateForeign makes a machine outside fleetd, without any ownership mark,
	// directly at the endpoint, and returns its provider ID.
	CreateForeign func(t *testing.T, name string) string
	// Size is a valid size for this provider.
	Size schema.MachineSize
	// Many is the number of machines of the paging test (default 1200); a
	// negative value skips it.
	Many int

	// ForeignExists, when set, reports whether the machine with the provider ID
	// id still exists at the endpoint, asked directly and not through fleetd.
	// The suite uses it to prove that a refused delete left a foreign machine
	// alone. Optional.
	ForeignExists func(t *testing.T, id string) bool
	// Seed, when set, makes machines of fleet for specs directly at the
	// endpoint, with the names and marks the provider's Create would give
	// them, and returns their provider IDs in the order of specs. The paging
	// case then seeds all but a few of its Many machines instead of creating
	// them through the provider, for endpoints where that is too slow (a
	// simulator that clones for real). Seeded machines are the harness's to
	// remove. Optional.
	Seed func(t *testing.T, fleet string, specs []reconcile.MachineSpec) []string
	// Timeout bounds each case; zero means 5 minutes.
	Timeout time.Duration
}

// DefaultMany is the machine count of the paging case when Harness.Many is zero.
const DefaultMany = 1200

// secretMarker is part of every user data document the suite sends; it must
// never show up in an error.
const secretMarker = "providertest-secret-token-"

// Run runs the conformance suite against h. Each case uses cluster names of
// its own, so the cases share one endpoint. Fleet names carry a random suffix,
// so Run may be called more than once against the same endpoint.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.NewProvider == nil {
		t.Fatal("providertest: Harness.NewProvider is nil")
	}
	s := &suite{h: h, id: randomSuffix(t)}
	s.fleet = "conform-" + s.id
	s.other = "otherfleet-" + s.id

	t.Run("CreateThenListCarriesMarks", s.testCreateList)
	t.Run("CreateAgainMakesNoTwins", s.testIdempotentCreate)
	t.Run("DeleteRemovesAndIsIdempotent", s.testDelete)
	t.Run("ForeignMachinesAreNeverListedOrDeleted", s.testForeign)
	t.Run("EmptyFleetListsNothing", s.testEmptyFleet)
	t.Run("ConcurrentCreatesInPoolsDoNotInterfere", s.testConcurrentPools)
	t.Run("ListPagesThroughManyMachines", s.testMany)
}

type suite struct {
	h     Harness
	id    string // random suffix of this run's fleet names
	fleet string // the fleet under test
	other string // a foreign fleet sharing the endpoint
}

func randomSuffix(t *testing.T) string {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

func (s *suite) ctx(t *testing.T) context.Context {
	d := s.h.Timeout
	if d == 0 {
		d = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// specs returns n machine specs of one pool of cluster, named the way the
// reconciler names machines: <cluster>-<pool>-<hash5>-<n>.
func (s *suite) specs(cluster, team, pool, hash string, first, n int) []reconcile.MachineSpec {
	out := make([]reconcile.MachineSpec, 0, n)
	for i := first; i < first+n; i++ {
		name := schema.MachineName(cluster, pool, hash, i)
		out = append(out, reconcile.MachineSpec{
			Name:         name,
			Cluster:      cluster,
			Team:         team,
			Pool:         pool,
			TemplateHash: hash,
			Size:         s.h.Size,
			UserData:     []byte("#cloud-config\nruncmd:\n  - echo " + secretMarker + name + "\n"),
		})
	}
	return out
}

// noSecret fails the test when err carries user data.
func noSecret(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), secretMarker) {
		t.Errorf("error reveals user data: %v", err)
	}
}

func (s *suite) create(t *testing.T, ctx context.Context, p reconcile.Provider, specs []reconcile.MachineSpec) []reconcile.Machine {
	t.Helper()
	ms, err := p.Create(ctx, specs)
	noSecret(t, err)
	if err != nil {
		t.Fatalf("Create(%d machines): %v", len(specs), err)
	}
	if len(ms) != len(specs) {
		t.Fatalf("Create(%d machines) returned %d machines", len(specs), len(ms))
	}
	for i, m := range ms {
		if m.Name != specs[i].Name {
			t.Fatalf("Create: machine %d is %q, want %q (the order of specs)", i, m.Name, specs[i].Name)
		}
		if m.ID == "" {
			t.Fatalf("Create: machine %q has no ID", m.Name)
		}
	}
	return ms
}

// cleanup deletes ms when the test ends, whatever its outcome.
func (s *suite) cleanup(t *testing.T, p reconcile.Provider, ms []reconcile.Machine) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := p.Delete(ctx, ids(ms)); err != nil {
			t.Errorf("cleanup: Delete: %v", err)
		}
	})
}

func (s *suite) list(t *testing.T, ctx context.Context, p reconcile.Provider) []reconcile.Machine {
	t.Helper()
	ms, err := p.List(ctx)
	noSecret(t, err)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if !slices.IsSortedFunc(ms, func(a, b reconcile.Machine) int { return strings.Compare(a.Name, b.Name) }) {
		t.Errorf("List: machines are not sorted by name")
	}
	return ms
}

// ofCluster returns the machines of cluster, by name.
func ofCluster(ms []reconcile.Machine, cluster string) map[string]reconcile.Machine {
	out := map[string]reconcile.Machine{}
	for _, m := range ms {
		if m.Cluster == cluster {
			out[m.Name] = m
		}
	}
	return out
}

func ids(ms []reconcile.Machine) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// checkListed checks that listed holds exactly the machines of specs (for
// their cluster), with the marks the specs asked for and the IDs of want.
func checkListed(t *testing.T, p reconcile.Provider, listed []reconcile.Machine, specs []reconcile.MachineSpec, want []reconcile.Machine) {
	t.Helper()
	if len(specs) == 0 {
		return
	}
	got := ofCluster(listed, specs[0].Cluster)
	names := map[string]int{}
	for _, m := range listed {
		names[m.Name]++
		if names[m.Name] > 1 {
			t.Errorf("List: machine %q is listed twice (a twin)", m.Name)
		}
	}
	if len(got) != len(specs) {
		t.Errorf("List: %d machines of cluster %s, want %d", len(got), specs[0].Cluster, len(specs))
	}
	for i, sp := range specs {
		m, ok := got[sp.Name]
		if !ok {
			t.Errorf("List: machine %q missing", sp.Name)
			continue
		}
		if want != nil && m.ID != want[i].ID {
			t.Errorf("List: machine %q has ID %q, Create returned %q", sp.Name, m.ID, want[i].ID)
		}
		if m.Provider != p.Name() {
			t.Errorf("List: machine %q: provider %q, want %q", sp.Name, m.Provider, p.Name())
		}
		if m.Cluster != sp.Cluster || m.Team != sp.Team || m.Pool != sp.Pool || m.TemplateHash != sp.TemplateHash {
			t.Errorf("List: machine %q marks cluster=%q team=%q pool=%q hash=%q, want %q %q %q %q",
				sp.Name, m.Cluster, m.Team, m.Pool, m.TemplateHash, sp.Cluster, sp.Team, sp.Pool, sp.TemplateHash)
		}
		switch m.State {
		case reconcile.MachinePending, reconcile.MachineRunning:
		default:
			t.Errorf("List: new machine %q is %q, want pending or running", sp.Name, m.State)
		}
		if m.CreatedAt.IsZero() {
			t.Errorf("List: machine %q has no creation time", sp.Name)
		}
	}
}

func (s *suite) testCreateList(t *testing.T) {
	ctx := s.ctx(t)
	p := s.h.NewProvider(t, s.fleet)
	specs := append(s.specs("ct-list", "team-a", "control", "a1b2c", 0, 2),
		s.specs("ct-list", "team-a", "workers", "d3e4f", 0, 3)...)
	ms := s.create(t, ctx, p, specs)
	s.cleanup(t, p, ms)
	for i, m := range ms {
		sp := specs[i]
		if m.Cluster != sp.Cluster || m.Team != sp.Team || m.Pool != sp.Pool || m.TemplateHash != sp.TemplateHash {
			t.Errorf("Create: machine %q marks cluster=%q team=%q pool=%q hash=%q", m.Name, m.Cluster, m.Team, m.Pool, m.TemplateHash)
		}
	}
	checkListed(t, p, s.list(t, ctx, p), specs, ms)
}

func (s *suite) testIdempotentCreate(t *testing.T) {
	ctx := s.ctx(t)
	p := s.h.NewProvider(t, s.fleet)
	specs := s.specs("ct-twins", "team-a", "workers", "0f0f0", 0, 3)
	first := s.create(t, ctx, p, specs)
	s.cleanup(t, p, first)

	// The same names again, as after a crash before the reconciler saw the
	// result; then the same names plus new ones.
	again := s.create(t, ctx, p, specs)
	for i := range first {
		if again[i].ID != first[i].ID {
			t.Errorf("Create again: %q has ID %q, first create gave %q (a twin)", first[i].Name, again[i].ID, first[i].ID)
		}
	}
	more := s.specs("ct-twins", "team-a", "workers", "0f0f0", 0, 5)
	all := s.create(t, ctx, p, more)
	s.cleanup(t, p, all[3:])
	for i := range first {
		if all[i].ID != first[i].ID {
			t.Errorf("Create with new names: %q has ID %q, first create gave %q (a twin)", first[i].Name, all[i].ID, first[i].ID)
		}
	}
	checkListed(t, p, s.list(t, ctx, p), more, all)

	// A second provider value for the same fleet (a restarted fleetd) sees
	// the machines as its own and makes no twin either.
	p2 := s.h.NewProvider(t, s.fleet)
	restarted := s.create(t, ctx, p2, specs)
	for i := range first {
		if restarted[i].ID != first[i].ID {
			t.Errorf("Create after restart: %q has ID %q, want %q", first[i].Name, restarted[i].ID, first[i].ID)
		}
	}
}

func (s *suite) testDelete(t *testing.T) {
	ctx := s.ctx(t)
	p := s.h.NewProvider(t, s.fleet)
	specs := s.specs("ct-delete", "team-b", "workers", "12345", 0, 3)
	ms := s.create(t, ctx, p, specs)
	s.cleanup(t, p, ms)

	// Delete two of three; the third stays.
	if err := p.Delete(ctx, ids(ms[:2])); err != nil {
		noSecret(t, err)
		t.Fatalf("Delete: %v", err)
	}
	got := ofCluster(s.list(t, ctx, p), "ct-delete")
	if len(got) != 1 {
		t.Errorf("after deleting 2 of 3: %d machines listed, want 1", len(got))
	}
	if m, ok := got[ms[2].Name]; !ok || m.ID != ms[2].ID {
		t.Errorf("after deleting 2 of 3: %q not listed", ms[2].Name)
	}

	// Deleting them again, and deleting all three, succeeds.
	if err := p.Delete(ctx, ids(ms[:2])); err != nil {
		t.Errorf("Delete of machines already gone: %v", err)
	}
	if err := p.Delete(ctx, ids(ms)); err != nil {
		t.Errorf("Delete of gone and present machines: %v", err)
	}
	if err := p.Delete(ctx, ids(ms)); err != nil {
		t.Errorf("Delete twice: %v", err)
	}
	if err := p.Delete(ctx, nil); err != nil {
		t.Errorf("Delete of nothing: %v", err)
	}
	if got := ofCluster(s.list(t, ctx, p), "ct-delete"); len(got) != 0 {
		t.Errorf("after deleting all: %d machines listed, want 0", len(got))
	}

	// The name is free again: creating it makes a new machine.
	re := s.create(t, ctx, p, specs[:1])
	s.cleanup(t, p, re)
	if re[0].ID == ms[0].ID {
		t.Logf("recreated %q kept ID %q (allowed, but unusual)", re[0].Name, re[0].ID)
	}
	checkListed(t, p, s.list(t, ctx, p), specs[:1], re)
}

func (s *suite) testForeign(t *testing.T) {
	ctx := s.ctx(t)
	p := s.h.NewProvider(t, s.fleet)
	other := s.h.NewProvider(t, s.other)

	// A machine of another fleet, with a cluster and machine name that this
	// fleet also uses, and a machine made outside fleetd.
	specs := s.specs("ct-foreign", "team-c", "workers", "abcde", 0, 1)
	theirs := s.create(t, ctx, other, specs)
	s.cleanup(t, other, theirs)
	var foreignID string
	if s.h.CreateForeign != nil {
		foreignID = s.h.CreateForeign(t, "ct-foreign-manual-0")
		if foreignID == "" {
			t.Fatal("CreateForeign returned no ID")
		}
	}

	ours := s.list(t, ctx, p)
	for _, m := range ours {
		if m.ID == theirs[0].ID || (foreignID != "" && m.ID == foreignID) {
			t.Errorf("List: foreign machine %q (%s) listed", m.Name, m.ID)
		}
		if m.Cluster == "ct-foreign" {
			t.Errorf("List: another fleet's machine %q listed", m.Name)
		}
	}

	// Refusing to delete is an error, and a second refusal shows the machine
	// is still there (a gone machine would be a success).
	refuse := func(id, what string) {
		t.Helper()
		for range 2 {
			if err := p.Delete(ctx, []string{id}); err == nil {
				t.Errorf("Delete of %s %s: no error", what, id)
			}
		}
		if s.h.ForeignExists != nil && !s.h.ForeignExists(t, id) {
			t.Errorf("Delete of %s %s: it was deleted", what, id)
		}
	}
	refuse(theirs[0].ID, "another fleet's machine")
	if foreignID != "" {
		refuse(foreignID, "a machine made outside fleetd")
	}

	// The other fleet still has its machine.
	got := ofCluster(s.list(t, ctx, other), "ct-foreign")
	if m, ok := got[theirs[0].Name]; !ok || m.ID != theirs[0].ID {
		t.Errorf("another fleet's machine %q is gone after a refused delete", theirs[0].Name)
	}

	// Creating the same name in this fleet either makes this fleet's own
	// machine (where names need not be unique) or fails (where the endpoint
	// keeps one name per place, as a vSphere folder does); either way the
	// other fleet's machine is neither adopted nor changed.
	mine, err := p.Create(ctx, specs)
	noSecret(t, err)
	if err == nil {
		s.cleanup(t, p, mine)
		if len(mine) != 1 || mine[0].ID == theirs[0].ID {
			t.Fatalf("Create of a name another fleet uses: got %+v, adopted or wrong", mine)
		}
		checkListed(t, p, s.list(t, ctx, p), specs, mine)
	} else {
		t.Logf("Create of a name another fleet uses failed (allowed): %v", err)
		for _, m := range mine {
			if m.ID == theirs[0].ID {
				t.Errorf("Create: adopted another fleet's machine %s", m.ID)
			}
		}
	}
	checkListed(t, other, s.list(t, ctx, other), specs, theirs)
}

func (s *suite) testEmptyFleet(t *testing.T) {
	ctx := s.ctx(t)
	p := s.h.NewProvider(t, "emptyfleet-"+s.id)
	if ms := s.list(t, ctx, p); len(ms) != 0 {
		t.Errorf("List of an empty fleet: %d machines, want none (first %q)", len(ms), ms[0].Name)
	}
}

func (s *suite) testConcurrentPools(t *testing.T) {
	ctx := s.ctx(t)
	p := s.h.NewProvider(t, s.fleet)
	type job struct {
		specs []reconcile.MachineSpec
		got   []reconcile.Machine
		err   error
	}
	jobs := []*job{
		{specs: s.specs("ct-conc", "team-d", "control", "c0c0c", 0, 3)},
		{specs: s.specs("ct-conc", "team-d", "workers", "c1c1c", 0, 4)},
		{specs: s.specs("ct-conc", "team-d", "infra", "c2c2c", 0, 2)},
		{specs: s.specs("ct-conc2", "team-e", "workers", "c3c3c", 0, 3)},
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() { j.got, j.err = p.Create(ctx, j.specs) })
	}
	wg.Wait()
	for _, j := range jobs {
		s.cleanup(t, p, j.got)
		noSecret(t, j.err)
		if j.err != nil {
			t.Fatalf("concurrent Create of pool %s: %v", j.specs[0].Pool, j.err)
		}
		if len(j.got) != len(j.specs) {
			t.Fatalf("concurrent Create of pool %s: %d machines, want %d", j.specs[0].Pool, len(j.got), len(j.specs))
		}
	}
	listed := s.list(t, ctx, p)
	var conc, conc2 []reconcile.MachineSpec
	var concM, conc2M []reconcile.Machine
	for _, j := range jobs {
		if j.specs[0].Cluster == "ct-conc" {
			conc, concM = append(conc, j.specs...), append(concM, j.got...)
		} else {
			conc2, conc2M = append(conc2, j.specs...), append(conc2M, j.got...)
		}
	}
	checkListed(t, p, listed, conc, concM)
	checkListed(t, p, listed, conc2, conc2M)
}

func (s *suite) testMany(t *testing.T) {
	n := s.h.Many
	if n == 0 {
		n = DefaultMany
	}
	if n < 0 {
		t.Skip("Harness.Many < 0")
	}
	ctx := s.ctx(t)
	p := s.h.NewProvider(t, s.fleet)
	// Several clusters and pools, as a real fleet has them.
	const perPool = 50
	var specs []reconcile.MachineSpec
	for i := 0; len(specs) < n; i++ {
		k := min(perPool, n-len(specs))
		specs = append(specs, s.specs(fmt.Sprintf("ct-many-%d", i/2), "team-m", fmt.Sprintf("p%d", i%2), "99999", 0, k)...)
	}
	var ms []reconcile.Machine
	if s.h.Seed != nil {
		// Seed all but the last few; create those through the provider, so
		// the pages mix both.
		k := n - min(n, 10)
		for i, id := range s.h.Seed(t, s.fleet, specs[:k]) {
			ms = append(ms, reconcile.Machine{ID: id, Name: specs[i].Name})
		}
		if len(ms) != k {
			t.Fatalf("Seed returned %d IDs for %d machines", len(ms), k)
		}
		created := s.create(t, ctx, p, specs[k:])
		s.cleanup(t, p, created)
		ms = append(ms, created...)
	} else {
		ms = s.create(t, ctx, p, specs)
		s.cleanup(t, p, ms)
	}

	listed := s.list(t, ctx, p)
	byName := map[string]reconcile.Machine{}
	for _, m := range listed {
		if strings.HasPrefix(m.Cluster, "ct-many-") {
			if _, dup := byName[m.Name]; dup {
				t.Errorf("List: %q listed twice", m.Name)
			}
			byName[m.Name] = m
		}
	}
	if len(byName) != n {
		t.Fatalf("List: %d of %d machines", len(byName), n)
	}
	for i, sp := range specs {
		m, ok := byName[sp.Name]
		if !ok {
			t.Errorf("List: %q missing", sp.Name)
			continue
		}
		if m.ID != ms[i].ID || m.Pool != sp.Pool || m.Cluster != sp.Cluster {
			t.Errorf("List: %q is %+v", sp.Name, m)
		}
	}
}
