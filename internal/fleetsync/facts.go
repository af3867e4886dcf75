package fleetsync

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// factsCache keeps what the history walk's blobs said between syncs, so a
// daemon parses each removed file and each earlier version once.
type factsCache struct {
	mu       sync.Mutex
	declared map[string]declaration     // by blob
	valid    map[string]*schema.Cluster // by fleet.yaml digest and blob; nil: not valid
}

// declaration is what one version of a cluster file declares.
type declaration struct {
	name      string
	protected bool
	err       error
}

// desiredFrom builds the desired state of a loaded fleet with the facts its
// history establishes: creation times, the commits that last changed each
// file, and the last valid version of each rejected file. Removal facts need
// the observed world and are added by removals.
func (l *Loop) desiredFrom(ctx context.Context, snap *Snapshot, fleet *schema.Fleet, diags schema.Diagnostics, h *fgit.History, herr error, now time.Time) (reconcile.Desired, *fgit.History) {
	d := reconcile.Desired{Fleet: fleet, Diagnostics: diags, Revision: snap.Revision}
	if fleet == nil {
		return d, nil
	}
	switch unread := diags.Unreadable(); {
	case snap.History == nil:
		d.FactsError = snap.HistoryError
		return d, nil
	case herr != nil:
		d.FactsError = herr.Error()
		l.logger().Warn("Safety facts unavailable: nothing is decommissioned and no TTL expires", "error", herr)
		return d, nil
	case len(unread) > 0:
		// What could not be read is missing from the fleet, not removed
		// from it: the history's files would otherwise look deleted.
		d.FactsError = fmt.Sprintf("%s was not read whole (%s)", snap.Describe, unread[0])
		l.logger().Warn("Safety facts unavailable: nothing is decommissioned and no TTL expires", "error", d.FactsError)
		return d, nil
	case snap.Rewritten:
		// Whoever force-pushes sets the commits' dates; the next sync,
		// with the branch no longer moving backwards, decides again.
		d.FactsError = fmt.Sprintf("the tracked branch was rewritten (force-pushed) before %s: no TTL expires and nothing is decommissioned in this sync", snap.Describe)
		l.logger().Warn("Tracked branch rewritten: no TTL expires and nothing is decommissioned in this sync", "revision", snap.Revision)
	}
	d.CreatedAt = make(map[string]time.Time, len(fleet.Clusters))
	d.ChangedBy = make(map[string]string, len(fleet.Clusters))
	for _, c := range fleet.Clusters {
		if f, ok := h.Files[path.Join(snap.Prefix, c.Path)]; ok {
			if !snap.Rewritten {
				d.CreatedAt[c.Spec.Name] = f.Created
			}
			d.ChangedBy[c.Spec.Name] = f.ChangedBy
			continue
		}
		// A file not committed yet: the change being planned creates it.
		d.CreatedAt[c.Spec.Name] = now
	}
	if len(fleet.Rejected) > 0 {
		fleetYAML, err := fs.ReadFile(snap.FS, schema.FleetFile)
		if err != nil {
			d.FactsError = fmt.Sprintf("cannot read %s again: %v", schema.FleetFile, err)
			return d, h
		}
		for _, r := range fleet.Rejected {
			d.Held = append(d.Held, l.held(ctx, snap, h, fleetYAML, r))
		}
	}
	return d, h
}

// held finds the last valid version of a rejected cluster file: the newest
// earlier content that loads without error against today's fleet.yaml.
func (l *Loop) held(ctx context.Context, snap *Snapshot, h *fgit.History, fleetYAML []byte, r schema.RejectedFile) reconcile.Held {
	held := reconcile.Held{Path: r.Path, Diagnostics: r.Diagnostics}
	f, ok := h.Files[path.Join(snap.Prefix, r.Path)]
	if !ok {
		return held
	}
	versions := append([]fgit.Version{{Blob: f.Blob, Commit: snap.HistoryCommit}}, f.Prior...)
	digest := fmt.Sprintf("%x", sha256.Sum256(fleetYAML))
	for _, v := range versions {
		c, err := l.validAt(ctx, snap.History, digest, fleetYAML, r.Path, v.Blob)
		if err != nil {
			l.logger().Warn("Cannot read an earlier version of a rejected cluster file", "path", r.Path, "blob", v.Blob, "error", err)
			return held
		}
		if c != nil {
			held.Last, held.Revision = c, v.Commit
			return held
		}
	}
	return held
}

func (l *Loop) validAt(ctx context.Context, hist History, digest string, fleetYAML []byte, p, blob string) (*schema.Cluster, error) {
	key := digest + "\x00" + blob
	l.facts.mu.Lock()
	c, ok := l.facts.valid[key]
	l.facts.mu.Unlock()
	if ok {
		return c, nil
	}
	data, err := hist.Blob(ctx, blob)
	if err != nil {
		return nil, err
	}
	f, diags := schema.Load(memFS{schema.FleetFile: fleetYAML, p: data})
	if f != nil && !diags.HasErrors() && len(f.Clusters) == 1 {
		c = f.Clusters[0]
	}
	l.facts.mu.Lock()
	if l.facts.valid == nil {
		l.facts.valid = map[string]*schema.Cluster{}
	}
	l.facts.valid[key] = c
	l.facts.mu.Unlock()
	return c, nil
}

// candidate is a cluster file that no longer declares its cluster: removed
// in history, or (in a person's directory) deleted from the work tree.
type candidate struct {
	path string
	blob string
	by   string // the removing commit; "" for the work tree
	at   time.Time
}

// removals establishes, for every observed cluster that no file declares,
// the commit that removed its file and whether it was protected in the last
// version that declared it. A cluster whose history shows neither is
// Unproven, and is never decommissioned.
//
// It fails when the history shows a cluster file in the commit's tree that
// the load did not see: the tree was not read whole, d.FactsError says so,
// and the sync is to be tried again.
func (l *Loop) removals(ctx context.Context, d *reconcile.Desired, h *fgit.History, snap *Snapshot, o reconcile.Observed) error {
	if d.Fleet == nil || d.FactsError != "" || h == nil {
		return nil
	}
	declared := map[string]bool{}
	present := map[string]bool{}
	for _, c := range d.Fleet.Clusters {
		declared[c.Spec.Name] = true
		present[path.Join(snap.Prefix, c.Path)] = true
	}
	for _, r := range d.Fleet.Rejected {
		declared[r.Name] = true
		present[path.Join(snap.Prefix, r.Path)] = true
	}
	for _, hd := range d.Held {
		if hd.Last != nil {
			declared[hd.Last.Spec.Name] = true
		}
	}
	teams := map[string]string{}
	for _, m := range o.Machines {
		if !declared[m.Cluster] && teams[m.Cluster] == "" {
			teams[m.Cluster] = m.Team
		}
	}
	for _, rc := range o.Rancher {
		if !declared[rc.Name] && teams[rc.Name] == "" {
			teams[rc.Name] = rc.Team
		}
	}
	if len(teams) == 0 {
		return nil
	}
	var cands []candidate
	for p, r := range h.Removed {
		cands = append(cands, candidate{path: p, blob: r.Last.Blob, by: r.By, at: r.At})
	}
	diagnosed := map[string]bool{}
	for _, dg := range d.Diagnostics {
		diagnosed[path.Join(snap.Prefix, dg.Path)] = true
	}
	for p, f := range h.Files {
		if present[p] || strings.HasPrefix(path.Base(p), ".") {
			continue
		}
		if !snap.WorkTree {
			// The tree is HistoryCommit's own: a file its history has
			// there that the load neither loaded nor reported on was not
			// read. That is never a removal.
			if !diagnosed[p] && schema.IsClusterFilePath(strings.TrimPrefix(strings.TrimPrefix(p, snap.Prefix), "/")) {
				d.FactsError = fmt.Sprintf("%s has %s, but loading the tree did not see it: the tree was not read whole", snap.Describe, p)
				return errors.New(d.FactsError)
			}
			continue
		}
		// A person's directory: a file the commit has and the directory
		// lacks was deleted there, and the plan shows what that does.
		cands = append(cands, candidate{path: p, blob: f.Blob, at: time.Now()})
	}
	// Newest removals first, so a name declared by several removed files
	// takes its last one.
	slices.SortFunc(cands, func(a, b candidate) int {
		if c := b.at.Compare(a.at); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
	byName := map[string]int{}
	indexed := 0
	find := func(name, team string) (int, bool) {
		if i, ok := byName[name]; ok {
			return i, true
		}
		// The conventional place first: clusters/<team>/<name>.yaml.
		for i, c := range cands {
			base := strings.TrimSuffix(strings.TrimSuffix(path.Base(c.path), ".yaml"), ".yml")
			if base == name && (team == "" || path.Base(path.Dir(c.path)) == team) {
				if dc := l.declaration(ctx, snap.History, c.blob); dc.err != nil || dc.name == name {
					byName[name] = i
					return i, true
				}
			}
		}
		for ; indexed < len(cands); indexed++ {
			dc := l.declaration(ctx, snap.History, cands[indexed].blob)
			if dc.err == nil {
				if _, seen := byName[dc.name]; !seen {
					byName[dc.name] = indexed
				}
			}
		}
		i, ok := byName[name]
		return i, ok
	}
	for _, name := range slices.Sorted(maps.Keys(teams)) {
		i, ok := find(name, teams[name])
		if !ok {
			if d.Unproven == nil {
				d.Unproven = map[string]string{}
			}
			d.Unproven[name] = fmt.Sprintf("no cluster file in the history of %s declares %s: fleetd cannot establish that its file was removed, or whether it was protected, so it is never decommissioned; to decommission it, commit a file for it and remove that file in a later commit", snap.Describe, name)
			continue
		}
		c := cands[i]
		dc := l.declaration(ctx, snap.History, c.blob)
		if dc.err != nil {
			if d.Unproven == nil {
				d.Unproven = map[string]string{}
			}
			d.Unproven[name] = fmt.Sprintf("cannot read whether %s was protected in the last version of %s: %v; it is never decommissioned while that is unknown", name, c.path, dc.err)
			continue
		}
		if c.by != "" {
			if d.RemovedBy == nil {
				d.RemovedBy = map[string]string{}
			}
			d.RemovedBy[name] = c.by
		}
		if dc.protected {
			d.Protected = append(d.Protected, name)
		}
	}
	slices.Sort(d.Protected)
	return nil
}

// declaration reads the name and protected flag of one version of a
// cluster file. Only these two fields are read, leniently: a version that
// fails the schema for another reason still tells whether it was protected.
func (l *Loop) declaration(ctx context.Context, hist History, blob string) declaration {
	l.facts.mu.Lock()
	dc, ok := l.facts.declared[blob]
	l.facts.mu.Unlock()
	if ok {
		return dc
	}
	data, err := hist.Blob(ctx, blob)
	if err == nil {
		var doc struct {
			Name      string `yaml:"name"`
			Protected *bool  `yaml:"protected"`
		}
		if err = yaml.Unmarshal(data, &doc); err == nil && doc.Name == "" {
			err = fmt.Errorf("it declares no name")
		}
		dc = declaration{name: doc.Name, protected: doc.Protected != nil && *doc.Protected, err: err}
	} else {
		dc = declaration{err: err}
	}
	if ctx.Err() == nil {
		l.facts.mu.Lock()
		if l.facts.declared == nil {
			l.facts.declared = map[string]declaration{}
		}
		l.facts.declared[blob] = dc
		l.facts.mu.Unlock()
	}
	return dc
}

// history walks the snapshot's history of clusters/ (nil without one), and
// returns the creation time of each cluster file by its path in the fleet
// repo, for the loader's duplicate-name order.
func (l *Loop) history(ctx context.Context, snap *Snapshot) (*fgit.History, map[string]time.Time, error) {
	if snap.History == nil {
		return nil, nil, nil
	}
	h, err := snap.History.History(ctx, snap.HistoryCommit, path.Join(snap.Prefix, schema.ClustersDir))
	if err != nil {
		return nil, nil, err
	}
	created := make(map[string]time.Time, len(h.Files))
	for p, f := range h.Files {
		rel := p
		if snap.Prefix != "" {
			rel = strings.TrimPrefix(p, snap.Prefix+"/")
		}
		created[rel] = f.Created
	}
	return h, created, nil
}
