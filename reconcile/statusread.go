package reconcile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fleetd/fleetd/schema"
)

// maxStatusFile bounds what ReadStatus reads of one file.
const maxStatusFile = 1 << 20

// StatusSet is the status of a fleet as recorded in status/.
type StatusSet struct {
	// Clusters by cluster name.
	Clusters map[string]*ClusterStatus
}

// ReadStatusFiles reads status files keyed by their path in the repo
// (status/...), as RenderStatus returns them and the git layer reads them
// from a branch, with the same checks as ReadStatus.
func ReadStatusFiles(files map[string][]byte) (*StatusSet, error) {
	entries, errs := statusEntries(files)
	return readEntries(entries, errs)
}

// statusEntries lists the status files among files, and the folders that
// have no place in status/.
func statusEntries(files map[string][]byte) ([]statusEntry, []error) {
	var entries []statusEntry
	var errs []error
	folders := map[string]bool{}
	for p, data := range files {
		rest, ok := strings.CutPrefix(p, StatusDir+"/")
		if !ok {
			continue
		}
		switch depth := strings.Count(rest, "/"); {
		case depth > 1:
			parts := strings.SplitN(rest, "/", 3)
			folder := StatusDir + "/" + parts[0] + "/" + parts[1]
			if !folders[folder] {
				folders[folder] = true
				errs = append(errs, fmt.Errorf("%s: unexpected folder: status files are status/<team>/<cluster>.yaml", folder))
			}
		case depth == 1 && strings.HasSuffix(p, ".yaml"):
			entries = append(entries, statusEntry{path: p, data: data})
		}
	}
	return entries, errs
}

// StatusCache reads status files as ReadStatusFiles does, decoding only the
// files that changed since its previous read: a sync that follows its own
// status commit finds all but a few files as it wrote them, and decoding
// 10,000 of them again was most of the time before its first provider call.
// It keeps the files and statuses of the last read only. The statuses are
// shared by the sets it returns: callers must not change them. The zero
// value is ready to use; a StatusCache is not safe for concurrent use.
type StatusCache struct {
	last map[string]decodedStatus
}

type decodedStatus struct {
	data []byte
	st   *ClusterStatus
	err  error
}

// ReadFiles is ReadStatusFiles with the decodings of unchanged files reused.
func (c *StatusCache) ReadFiles(files map[string][]byte) (*StatusSet, error) {
	entries, errs := statusEntries(files)
	var todo []statusEntry
	var idx []int
	for i := range entries {
		e := &entries[i]
		if d, ok := c.last[e.path]; ok && bytes.Equal(d.data, e.data) {
			e.st, e.err = d.st, d.err
			continue
		}
		todo = append(todo, *e)
		idx = append(idx, i)
	}
	decodeEntries(todo)
	for k, i := range idx {
		entries[i] = todo[k]
	}
	next := make(map[string]decodedStatus, len(entries))
	for _, e := range entries {
		next[e.path] = decodedStatus{data: e.data, st: e.st, err: e.err}
	}
	c.last = next
	return checkEntries(entries, errs)
}

// ReadStatus reads status/<team>/<cluster>.yaml from fsys, the root of a
// fleet repo. A missing status/ is an empty set. Status files are untrusted
// input (anyone with write access to the repo can change them): every problem
// is an error naming the file, and nothing is read beyond 1 MiB per file.
// Files are decoded once each, in parallel.
func ReadStatus(fsys fs.FS) (*StatusSet, error) {
	var entries []statusEntry
	var errs []error
	err := fs.WalkDir(fsys, StatusDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == StatusDir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			return nil
		}
		depth := strings.Count(p, "/")
		switch {
		case e.IsDir():
			if depth > 1 {
				errs = append(errs, fmt.Errorf("%s: unexpected folder: status files are status/<team>/<cluster>.yaml", p))
				return fs.SkipDir
			}
			return nil
		case !e.Type().IsRegular():
			errs = append(errs, fmt.Errorf("%s: not a regular file", p))
			return nil
		case depth == 1:
			// SUMMARY.md and anything else at the top: not read.
			return nil
		case !strings.HasSuffix(p, ".yaml"):
			return nil
		}
		entries = append(entries, statusEntry{path: p, fsys: fsys})
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return readEntries(entries, errs)
}

// statusEntry is one status file to read: its data, or the file system to
// read it from.
type statusEntry struct {
	path string
	data []byte
	fsys fs.FS
	st   *ClusterStatus
	err  error
}

// readEntries decodes the entries in parallel, then checks them in path
// order, so the set and its errors do not depend on scheduling.
func readEntries(entries []statusEntry, errs []error) (*StatusSet, error) {
	decodeEntries(entries)
	return checkEntries(entries, errs)
}

// decodeEntries reads (from fsys) and decodes each entry, in parallel.
func decodeEntries(entries []statusEntry) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(len(entries)/64, 1)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(entries) {
					return
				}
				e := &entries[i]
				data := e.data
				if e.fsys != nil {
					data, e.err = readLimited(e.fsys, e.path)
				}
				if e.err == nil {
					e.st, e.err = checkStatusFile(e.path, data)
				}
			}
		})
	}
	wg.Wait()
}

// checkEntries builds the set of decoded entries in path order, reporting
// each cluster recorded twice.
func checkEntries(entries []statusEntry, errs []error) (*StatusSet, error) {
	slices.SortFunc(entries, func(a, b statusEntry) int { return strings.Compare(a.path, b.path) })
	set := &StatusSet{Clusters: make(map[string]*ClusterStatus, len(entries))}
	paths := map[string]string{}
	for _, e := range entries {
		if e.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.path, e.err))
			continue
		}
		if first, dup := paths[e.st.Cluster]; dup {
			errs = append(errs, fmt.Errorf("%s: cluster %s is also in %s", e.path, e.st.Cluster, first))
			continue
		}
		paths[e.st.Cluster] = e.path
		set.Clusters[e.st.Cluster] = e.st
	}
	return set, errors.Join(errs...)
}

func readLimited(fsys fs.FS, p string) ([]byte, error) {
	f, err := fsys.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxStatusFile+1))
}

// checkStatusFile decodes one status file and checks that it is where its
// cluster's status belongs.
func checkStatusFile(p string, data []byte) (*ClusterStatus, error) {
	if len(data) > maxStatusFile {
		return nil, fmt.Errorf("larger than %d bytes", maxStatusFile)
	}
	st, err := parseStatus(data)
	if err != nil {
		return nil, err
	}
	team, file := path.Split(strings.TrimPrefix(p, StatusDir+"/"))
	if want := strings.TrimSuffix(file, ".yaml"); st.Cluster != want || st.Team != strings.TrimSuffix(team, "/") {
		return nil, fmt.Errorf("holds cluster %q of team %q, but the file is for %s/%s", st.Cluster, st.Team, strings.TrimSuffix(team, "/"), want)
	}
	return st, nil
}

// parseStatus decodes and checks one status file.
func parseStatus(data []byte) (*ClusterStatus, error) {
	// Read as YAML 1.2, as fleet files and editors read it, then decoded
	// strictly: an unknown field is an error, not silently dropped.
	v, err := schema.ParseYAML(data)
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	var st ClusterStatus
	if err := schema.Decode(v, &st); err != nil {
		return nil, fmt.Errorf("invalid status: %w", err)
	}
	if st.APIVersion != schema.APIVersion || st.Kind != StatusKind {
		return nil, fmt.Errorf("apiVersion %q, kind %q: want %s, %s", st.APIVersion, st.Kind, schema.APIVersion, StatusKind)
	}
	if st.Cluster == "" || st.Team == "" {
		return nil, errors.New("cluster and team are required")
	}
	if st.Phase == "" {
		return nil, errors.New("phase is required")
	}
	seen := map[string]bool{}
	for i, p := range st.Pools {
		if p.Name == "" {
			return nil, fmt.Errorf("pools[%d]: name is required", i)
		}
		for j, m := range p.Machines {
			switch {
			case m.Name == "":
				return nil, fmt.Errorf("pools[%d].machines[%d]: name is required", i, j)
			case m.ID == "" || m.Provider == "":
				return nil, fmt.Errorf("pools[%d].machines[%d] (%s): id and provider are required", i, j, m.Name)
			case seen[m.Name+"\x00"+m.ID]:
				return nil, fmt.Errorf("pools[%d].machines[%d]: machine %s (%s) is listed twice", i, j, m.Name, m.ID)
			}
			seen[m.Name+"\x00"+m.ID] = true
		}
	}
	for i, t := range st.Templates {
		if TemplateHash(t) != t.Hash {
			return nil, fmt.Errorf("templates[%d]: hash %q does not match the template", i, t.Hash)
		}
	}
	if r := st.Rancher; r != nil {
		for i, m := range r.OtherMachines {
			if m.Name == "" {
				return nil, fmt.Errorf("rancher.otherMachines[%d]: name is required", i)
			}
		}
	}
	return &st, nil
}

// ObservedFromStatus reads status/ of a fleet repo as the observed world: the
// last state fleetd recorded, for planning without provider credentials.
func ObservedFromStatus(fsys fs.FS) (Observed, error) {
	set, err := ReadStatus(fsys)
	if err != nil {
		return Observed{}, err
	}
	return set.Observed(), nil
}

// Templates returns the machine templates the recorded clusters name, by
// hash (decommissioned clusters' aside), without rebuilding their machines.
func (s *StatusSet) Templates() map[string]Template {
	if s == nil {
		return nil
	}
	var out map[string]Template
	for _, st := range s.Clusters {
		if st.Phase == PhaseDecommissioned {
			continue
		}
		for _, t := range st.Templates {
			if out == nil {
				out = map[string]Template{}
			}
			out[t.Hash] = t
		}
	}
	return out
}

// Observed returns the world the status records. Decommissioned clusters hold
// nothing.
func (s *StatusSet) Observed() Observed {
	var o Observed
	if s == nil {
		return o
	}
	for _, name := range slices.Sorted(maps.Keys(s.Clusters)) {
		st := s.Clusters[name]
		if st.Phase == PhaseDecommissioned {
			continue
		}
		for _, t := range st.Templates {
			if o.Templates == nil {
				o.Templates = map[string]Template{}
			}
			o.Templates[t.Hash] = t
		}
		var rc *RancherCluster
		if r := st.Rancher; r != nil {
			rc = &RancherCluster{Name: st.Cluster, Team: st.Team, ID: r.ClusterID, Ready: r.Ready, Deleting: r.Deleting,
				KubernetesVersion: r.KubernetesVersion, Protected: st.Protected, Bindings: slices.Clone(r.Bindings),
				Machines: slices.Clone(r.OtherMachines)}
		}
		for _, p := range st.Pools {
			for _, m := range p.Machines {
				o.Machines = append(o.Machines, Machine{ID: m.ID, Name: m.Name, Provider: m.Provider, Cluster: st.Cluster,
					Team: st.Team, Pool: p.Name, TemplateHash: m.Template, State: m.State, Address: m.Address, CreatedAt: m.CreatedAt})
				if rc != nil && m.RancherMachine != "" {
					rc.Machines = append(rc.Machines, RancherMachine{Name: m.RancherMachine, Node: m.Name, Phase: m.RancherPhase})
					if rc.Nodes == nil {
						rc.Nodes = map[string]bool{}
					}
					rc.Nodes[m.Name] = m.Ready
				}
			}
		}
		if rc != nil {
			slices.SortFunc(rc.Machines, func(a, b RancherMachine) int { return strings.Compare(a.Name, b.Name) })
			o.Rancher = append(o.Rancher, *rc)
		}
	}
	slices.SortFunc(o.Machines, func(a, b Machine) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return o
}

// Protected lists the clusters recorded as protected, for Desired.Protected.
func (s *StatusSet) Protected() []string {
	if s == nil {
		return nil
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(s.Clusters)) {
		if s.Clusters[name].Protected {
			out = append(out, name)
		}
	}
	return out
}
