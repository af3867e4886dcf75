package schema

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// FleetFile is the path of the fleet-wide settings in a fleet repo.
const FleetFile = "fleet.yaml"

// ClustersDir holds one folder per team with one file per cluster.
const ClustersDir = "clusters"

// file is one fleet repo file on its way through the loader.
type file struct {
	path  string
	team  string // the folder under clusters/, for cluster files
	doc   *document
	diags Diagnostics
	fleet *FleetSpec
	spec  *ClusterSpec
	// lenient marks a cluster file that failed the schema: its spec was
	// decoded leniently and only its references are checked.
	lenient bool
	// elsewhere are errors that hold this file but are reported on
	// another file (a class's even etcd count, reported at the class).
	elsewhere Diagnostics
}

func (f *file) errorf(p position, field, check, format string, args ...any) {
	f.diags = append(f.diags, Diagnostic{Severity: SeverityError, Path: f.path, Line: p.line, Column: p.col,
		Field: field, Check: check, Message: fmt.Sprintf(format, args...)})
}

func (f *file) warnf(p position, field, check, format string, args ...any) {
	f.diags = append(f.diags, Diagnostic{Severity: SeverityWarning, Path: f.path, Line: p.line, Column: p.col,
		Field: field, Check: check, Message: fmt.Sprintf(format, args...)})
}

// at returns the position of the value at tokens and its field path.
func (f *file) at(tokens ...string) (position, string) {
	return f.doc.valuePos(tokens...), f.doc.fieldPath(tokens)
}

// Load reads a fleet repo: fleet.yaml and clusters/<team>/*.yaml|yml. It
// reports every problem at once, sorted by file and line. It returns a nil
// Fleet when fleet.yaml itself is missing or invalid (nothing can be planned);
// otherwise the Fleet holds every cluster that loaded, and each cluster file
// that did not is listed in Rejected with its diagnostics. Load never follows
// symbolic links and reads at most 1 MiB per file, so it is safe on untrusted
// trees; fsys may be a directory or a git commit's tree.
func Load(fsys fs.FS, opts ...Option) (*Fleet, Diagnostics) {
	l := &loader{fsys: fsys}
	for _, o := range opts {
		o(l)
	}
	files := l.discover()
	if l.tooMany {
		// Nothing is planned from a fleet that was not read whole: a
		// partial fleet would look like mass removal.
		l.diags.Sort()
		return nil, l.diags
	}
	if l.cache != nil {
		l.cache.begin()
		defer l.cache.end()
	}
	l.parseAll(files)

	var fleetF *file
	clusters := make([]*file, 0, len(files))
	for _, f := range files {
		if f.path == FleetFile {
			fleetF = f
		} else {
			clusters = append(clusters, f)
		}
	}
	var fleet *Fleet
	if fleetF != nil && fleetF.fleet != nil {
		fc := newFleetChecker(fleetF)
		fc.check()
		if !fleetF.diags.HasErrors() {
			fleet = &Fleet{Spec: *fleetF.fleet}
			l.checkClusters(fc, fleet, clusters)
			fc.reportEvenEtcd()
			fc.checkPrices()
		}
	}
	for _, f := range files {
		l.diags = append(l.diags, f.diags...)
	}
	if fleet != nil {
		for _, f := range clusters {
			if f.diags.HasErrors() || len(f.elsewhere) > 0 {
				r := RejectedFile{Path: f.path, Diagnostics: append(slices.Clone(f.diags), f.elsewhere...)}
				if f.spec != nil {
					r.Name, r.Team = f.spec.Name, f.spec.Team
				}
				fleet.Rejected = append(fleet.Rejected, r)
			}
		}
		for i := range fleet.Rejected {
			fleet.Rejected[i].Diagnostics.Sort()
		}
	}
	l.diags.Sort()
	return fleet, l.diags
}

type loader struct {
	fsys  fs.FS
	diags Diagnostics
	// created orders cluster files by when git history added them.
	created map[string]time.Time
	// tooMany is set when clusters/ holds more than MaxClusterFiles files.
	tooMany bool
	// cache, when set, holds earlier parses by content.
	cache *ParseCache
}

// MaxClusterFiles is the most files Load reads under clusters/. A fleet
// repo with more is refused whole, before any file is parsed, so a
// runaway commit costs milliseconds and little memory.
const MaxClusterFiles = 20000

// An Option changes how Load reads a fleet repo.
type Option func(*loader)

// WithCreationTimes tells Load when each cluster file (by slash-separated
// path) was added in git history. When two files declare the same cluster
// name, the one added later is reported as the duplicate; files missing from
// created count as newest (not committed yet). Without it, path order
// decides.
func WithCreationTimes(created map[string]time.Time) Option {
	return func(l *loader) { l.created = created }
}

// creationOrder compares two cluster files by when they were added, then by path.
func (l *loader) creationOrder(a, b *file) int {
	ta, oka := l.created[a.path]
	tb, okb := l.created[b.path]
	switch {
	case oka && okb && !ta.Equal(tb):
		return ta.Compare(tb)
	case oka != okb:
		if oka {
			return -1
		}
		return 1
	}
	return strings.Compare(a.path, b.path)
}

// CheckRead marks the diagnostics of a tree that could not be read whole:
// a folder or file whose read failed (a missing git object, an I/O error),
// as opposed to one whose content is wrong. A fleet loaded with such a
// diagnostic lacks what could not be read, and nothing may take that lack
// as a removal (see Diagnostics.Unreadable).
const CheckRead = "read"

// readError reports a folder or file that could not be read.
func (l *loader) readError(p, format string, args ...any) {
	l.fileError(p, CheckRead, format, args...)
}

func (l *loader) fileError(p, check, format string, args ...any) {
	l.diags = append(l.diags, Diagnostic{Severity: SeverityError, Path: p, Check: check, Message: fmt.Sprintf(format, args...)})
}

// discover lists the files to load, reporting anything in the layout that is
// not a fleet file. It looks at directory entries only, so symbolic links are
// seen as links and never followed.
func (l *loader) discover() []*file {
	var files []*file
	root, err := fs.ReadDir(l.fsys, ".")
	if err != nil {
		l.readError(".", "cannot read the fleet repo: %v", err)
		return nil
	}
	byName := map[string]fs.DirEntry{}
	for _, e := range root {
		byName[e.Name()] = e
	}
	switch e, ok := byName[FleetFile]; {
	case !ok:
		hint := ""
		if _, yml := byName["fleet.yml"]; yml {
			hint = "; rename fleet.yml to fleet.yaml"
		}
		l.fileError(FleetFile, "layout", "fleet.yaml not found: a fleet repo has its fleet-wide settings in fleet.yaml at its root%s", hint)
	case l.acceptFile(FleetFile, e):
		files = append(files, &file{path: FleetFile})
	}
	e, ok := byName[ClustersDir]
	if !ok {
		return files
	}
	if !e.IsDir() {
		l.fileError(ClustersDir, "layout", "%s must be a folder with one folder per team, not a %s", ClustersDir, kindOf(e))
		return files
	}
	teams, err := fs.ReadDir(l.fsys, ClustersDir)
	if err != nil {
		l.readError(ClustersDir, "cannot read: %v", err)
		return files
	}
	count := 0
	for _, t := range teams {
		tp := path.Join(ClustersDir, t.Name())
		if isKeepFile(t.Name()) && t.Type().IsRegular() {
			continue
		}
		if !t.IsDir() {
			if t.Type()&fs.ModeSymlink != 0 {
				l.fileError(tp, "symlink", "symbolic links are not followed: replace the link with the folder itself")
			} else {
				l.fileError(tp, "layout", "cluster files go in a folder per team, clusters/<team>/<cluster>.yaml: move this file into its team's folder")
			}
			continue
		}
		entries, err := fs.ReadDir(l.fsys, tp)
		if err != nil {
			l.readError(tp, "cannot read: %v", err)
			continue
		}
		count += len(entries)
		if count > MaxClusterFiles {
			l.fileError(ClustersDir, "limit", "more than %d files under clusters/: fleetd reads at most %d cluster files; nothing was loaded", MaxClusterFiles, MaxClusterFiles)
			l.tooMany = true
			return files
		}
		for _, e := range entries {
			p := path.Join(tp, e.Name())
			switch {
			case isKeepFile(e.Name()) && e.Type().IsRegular():
				// A placeholder that keeps an empty folder in git.
			case strings.HasPrefix(e.Name(), ".") && isYAMLName(strings.TrimPrefix(e.Name(), ".")):
				l.fileError(p, "layout", "hidden files are not loaded: rename it to %s to declare a cluster, or remove it", strings.TrimPrefix(e.Name(), "."))
			case e.IsDir():
				l.fileError(p, "layout", "nested folders are not read: cluster files go directly in clusters/<team>/")
			case !isYAMLName(e.Name()):
				if e.Type()&fs.ModeSymlink != 0 {
					l.fileError(p, "symlink", "symbolic links are not followed: replace the link with the file itself")
				} else {
					l.fileError(p, "layout", "not a cluster file: only .yaml and .yml files belong under clusters/")
				}
			case l.acceptFile(p, e):
				files = append(files, &file{path: p, team: t.Name()})
			}
		}
	}
	return files
}

// isKeepFile reports whether name is a placeholder that keeps an empty
// folder in git.
func isKeepFile(name string) bool {
	return name == ".gitkeep" || name == ".keep"
}

// IsClusterFilePath reports whether p, slash-separated and relative to the
// fleet repo's root, is where Load reads a cluster file:
// clusters/<team>/<name>.yaml or .yml, not hidden.
func IsClusterFilePath(p string) bool {
	team, name, ok := strings.Cut(strings.TrimPrefix(p, ClustersDir+"/"), "/")
	return ok && strings.HasPrefix(p, ClustersDir+"/") && team != "" && !strings.Contains(name, "/") &&
		!strings.HasPrefix(name, ".") && isYAMLName(name)
}

func isYAMLName(name string) bool {
	ext := path.Ext(name)
	return (ext == ".yaml" || ext == ".yml") && len(name) > len(ext)
}

func kindOf(e fs.DirEntry) string {
	switch {
	case e.Type()&fs.ModeSymlink != 0:
		return "symbolic link"
	case e.IsDir():
		return "folder"
	default:
		return "file"
	}
}

// acceptFile reports whether the entry is a regular file of at most 1 MiB.
func (l *loader) acceptFile(p string, e fs.DirEntry) bool {
	switch {
	case e.Type()&fs.ModeSymlink != 0:
		l.fileError(p, "symlink", "symbolic links are not followed: replace the link with the file itself")
		return false
	case !e.Type().IsRegular():
		l.fileError(p, "layout", "not a regular file (a %s)", kindOf(e))
		return false
	}
	// The size is checked when the file is read, without a stat here.
	return true
}

// parseAll reads, parses, validates and decodes every file, in parallel.
func (l *loader) parseAll(files []*file) {
	work := make(chan *file)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(len(files), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				l.parseFile(f)
			}
		}()
	}
	for _, f := range files {
		work <- f
	}
	close(work)
	wg.Wait()
}

func (l *loader) parseFile(f *file) {
	var (
		data []byte
		err  error
	)
	if l.cache != nil {
		var key string
		key, data, err = l.cacheKey(f.path)
		if err == nil {
			if p := l.cache.get(key); p != nil {
				f.fromCache(p)
				return
			}
			// A read that fails is not a property of the content: it is
			// never cached, so the next load reads the file again.
			defer func() {
				if !slices.ContainsFunc(f.diags, func(d Diagnostic) bool { return d.Check == CheckRead }) {
					l.cache.put(key, f.toCache())
					// A cluster file without problems keeps its data, not
					// its value, in the cache (see compact).
					if f.doc != nil && f.path != FleetFile && len(f.diags) == 0 {
						f.doc.compact()
					}
				}
			}()
		}
	}
	if data == nil && err == nil {
		data, err = readBounded(l.fsys, f.path)
	}
	if err != nil {
		check := "size"
		var re *readErr
		if errors.As(err, &re) {
			check = CheckRead
		}
		f.diags = append(f.diags, Diagnostic{Severity: SeverityError, Path: f.path, Check: check, Message: err.Error()})
		return
	}
	doc, perr := parseDocument(f.path, data)
	if perr != nil {
		f.errorf(perr.pos, perr.field, perr.check, "%s", perr.msg)
		return
	}
	f.doc = doc
	want := KindCluster
	var target any = &ClusterSpec{}
	if f.path == FleetFile {
		want, target = KindFleet, &FleetSpec{}
	}
	if !f.checkKind(want) {
		return
	}
	if ds := validateSchema(doc, want, reflect.TypeOf(target).Elem()); len(ds) > 0 {
		f.diags = append(f.diags, ds...)
		// A cluster file that fails the schema is still decoded leniently
		// (json.Unmarshal fills every field whose type fits), so its
		// references can be checked too and all problems show at once.
		if want == KindCluster {
			spec := &ClusterSpec{}
			_ = decode(doc.value(), spec, false)
			f.spec, f.lenient = spec, true
		}
		return
	}
	if err := decode(doc.value(), target, true); err != nil {
		// The schema admits only what the Go types hold, and a test walks
		// both; this is a bug.
		f.errorf(position{1, 1}, "", "schema", "cannot decode: %v", err)
		return
	}
	switch t := target.(type) {
	case *FleetSpec:
		f.fleet = t
	case *ClusterSpec:
		f.spec = t
	}
}

// checkKind checks apiVersion and kind before the schema, so a file of the
// wrong kind gets one clear message instead of a list of unknown fields.
func (f *file) checkKind(want string) bool {
	m, ok := f.doc.value().(map[string]any)
	if !ok {
		p := f.doc.valuePos()
		f.errorf(p, "", "schema", "expected a mapping with apiVersion: %s and kind: %s", APIVersion, want)
		return false
	}
	if k, ok := m["kind"].(string); ok && k != want && (k == KindFleet || k == KindCluster) {
		p, field := f.at("kind")
		where := "clusters/<team>/"
		if k == KindFleet {
			where = "fleet.yaml at the repo root"
		}
		f.errorf(p, field, "schema", "kind %s belongs in %s; this file must be of kind %s", k, where, want)
		return false
	}
	return true
}

// readBounded reads a file of at most maxFileSize bytes: its size first,
// then one read of that size, and never more than the bound.
func readBounded(fsys fs.FS, p string) ([]byte, error) {
	fh, err := fsys.Open(p)
	if err != nil {
		return nil, &readErr{unwrapPathError(err)}
	}
	defer fh.Close()
	size := int64(512)
	if info, err := fh.Stat(); err == nil {
		if info.Size() > maxFileSize {
			return nil, fmt.Errorf("the file is %d bytes: fleet files may be at most 1 MiB", info.Size())
		}
		size = info.Size()
	}
	// One byte more than the size, so a file that grew since is seen.
	buf := make([]byte, 0, size+1)
	for {
		n, err := fh.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &readErr{unwrapPathError(err)}
		}
		if len(buf) > maxFileSize {
			return nil, fmt.Errorf("the file is larger than 1 MiB: fleet files may be at most 1 MiB")
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
	return buf, nil
}

// readErr is a file that could not be read, as opposed to one too large.
type readErr struct{ err error }

func (e *readErr) Error() string { return "cannot read: " + e.err.Error() }
func (e *readErr) Unwrap() error { return e.err }

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// namesOf lists the keys of a map, sorted, for messages.
func namesOf[V any](m map[string]V) string {
	return strings.Join(slices.Sorted(maps.Keys(m)), ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func suggestion(name string, m map[string]position) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	if s := suggest(name, names); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}
