package fleetsync

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
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
// file, the last valid version of each rejected file and the removal facts
// of every file the history shows removed (see removals): the desired state
// is complete before anything is observed.
func (l *Loop) desiredFrom(ctx context.Context, snap *Snapshot, fleet *schema.Fleet, diags schema.Diagnostics, h *fgit.History, herr error, now time.Time) (reconcile.Desired, error) {
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
			return d, nil
		}
		for _, r := range fleet.Rejected {
			d.Held = append(d.Held, l.held(ctx, snap, h, fleetYAML, r))
		}
	}
	return d, l.removals(ctx, &d, h, snap)
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
	l.mem.facts.mu.Lock()
	c, ok := l.mem.facts.valid[key]
	l.mem.facts.mu.Unlock()
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
	l.mem.facts.mu.Lock()
	if l.mem.facts.valid == nil {
		l.mem.facts.valid = map[string]*schema.Cluster{}
	}
	l.mem.facts.valid[key] = c
	l.mem.facts.mu.Unlock()
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

// removals establishes, before anything is observed, the removal facts of
// every cluster file the history shows removed (and, in a person's
// directory, of every file its commit has and the directory lacks): the
// cluster each last declared, the commit that removed it, and whether it
// was protected then. A name declared by several removed files takes its
// newest removal; a name the fleet declares now has none.
//
// It fails when the history shows a cluster file in the commit's tree that
// the load did not see: the tree was not read whole, d.FactsError says so,
// and the sync is to be tried again.
func (l *Loop) removals(ctx context.Context, d *reconcile.Desired, h *fgit.History, snap *Snapshot) error {
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
	rel := func(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, snap.Prefix), "/") }
	d.Removed = reconcile.Removals{}
	for _, c := range cands {
		dc := l.declaration(ctx, snap.History, c.blob)
		name := dc.name
		if dc.err != nil {
			if err := ctx.Err(); err != nil {
				d.Removed = nil
				d.FactsError = fmt.Sprintf("reading the removed cluster files of %s was cut short: %v", snap.Describe, err)
				return errors.New(d.FactsError)
			}
			// Which cluster a file declared that cannot be read is
			// unknown: by convention clusters/<team>/<name>.yaml names
			// it, and that cluster is never decommissioned while the
			// file is unreadable.
			name = strings.TrimSuffix(strings.TrimSuffix(path.Base(c.path), ".yaml"), ".yml")
		}
		if _, seen := d.Removed[name]; seen || declared[name] || name == "" {
			continue
		}
		r := reconcile.Removal{Path: rel(c.path), By: c.by, Protected: dc.protected}
		if dc.err != nil {
			r.Unreadable = dc.err.Error()
		}
		d.Removed[name] = r
	}
	return nil
}

// declaration reads the name and protected flag of one version of a
// cluster file. Only these two fields are read, leniently: a version that
// fails the schema for another reason still tells whether it was protected.
func (l *Loop) declaration(ctx context.Context, hist History, blob string) declaration {
	l.mem.facts.mu.Lock()
	dc, ok := l.mem.facts.declared[blob]
	l.mem.facts.mu.Unlock()
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
		l.mem.facts.mu.Lock()
		if l.mem.facts.declared == nil {
			l.mem.facts.declared = map[string]declaration{}
		}
		l.mem.facts.declared[blob] = dc
		l.mem.facts.mu.Unlock()
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
