package git

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// FS returns the tree of commit as a read-only file system, read straight
// from the clone's object store (no checkout). It implements fs.FS,
// fs.ReadDirFS, fs.ReadFileFS and fs.StatFS.
//
// Symbolic links are never followed: ReadDir and Stat report them with
// fs.ModeSymlink in Type() and Mode() (Stat describes the link itself, like
// lstat), while Open and ReadFile of a link, or of a path through one, fail
// with an error wrapping ErrSymlink. Submodules are reported as
// fs.ModeIrregular and cannot be opened. Every file's ModTime is the
// commit's time.
//
// The file system stays valid until the Repo is closed; it may be used from
// several goroutines.
func (r *Repo) FS(ctx context.Context, commit string) (fs.FS, error) {
	h, err := parseHash(commit)
	if err != nil {
		return nil, fmt.Errorf("git: read tree: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errors.New("git: repo is closed")
	}
	c, err := object.GetCommit(r.st, h)
	if err != nil {
		r.noteCorrupt(err)
		return nil, fmt.Errorf("git: read tree of commit %s: %w", h, err)
	}
	return &treeFS{r: r, root: c.TreeHash, mtime: c.Committer.When, trees: map[plumbing.Hash]*object.Tree{}, index: map[plumbing.Hash]map[string]int{}}, nil
}

type treeFS struct {
	r     *Repo
	root  plumbing.Hash
	mtime time.Time
	// trees caches decoded trees, and index their entries by name (a
	// clusters/<team> folder may hold thousands); guarded by r.mu.
	trees map[plumbing.Hash]*object.Tree
	index map[plumbing.Hash]map[string]int
}

var (
	_ fs.ReadDirFS  = (*treeFS)(nil)
	_ fs.ReadFileFS = (*treeFS)(nil)
	_ fs.StatFS     = (*treeFS)(nil)
)

// node is a resolved path: a tree entry (the root is a directory entry).
type node struct {
	name string // base name, "." for the root
	mode filemode.FileMode
	hash plumbing.Hash
}

// lock takes the repository lock; reads share the object store with
// fetches and status writes.
func (f *treeFS) lock() error {
	f.r.mu.Lock()
	if f.r.closed {
		f.r.mu.Unlock()
		return fs.ErrClosed
	}
	return nil
}

func (f *treeFS) unlock() { f.r.mu.Unlock() }

func (f *treeFS) tree(h plumbing.Hash) (*object.Tree, error) {
	if t, ok := f.trees[h]; ok {
		return t, nil
	}
	t, err := readTree(f.r.st, h)
	if err != nil {
		f.r.noteCorrupt(err)
		return nil, err
	}
	f.trees[h] = t
	return t, nil
}

// resolve finds name without following symlinks. Called with the lock held.
func (f *treeFS) resolve(op, name string) (node, error) {
	if !fs.ValidPath(name) {
		return node{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n := node{name: ".", mode: filemode.Dir, hash: f.root}
	if name == "." {
		return n, nil
	}
	parts := strings.Split(name, "/")
	for i, part := range parts {
		switch n.mode {
		case filemode.Dir:
		case filemode.Symlink:
			return node{}, &fs.PathError{Op: op, Path: name, Err: ErrSymlink}
		default:
			return node{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		t, err := f.tree(n.hash)
		if err != nil {
			return node{}, &fs.PathError{Op: op, Path: strings.Join(parts[:i], "/"), Err: err}
		}
		ix, ok := f.index[n.hash]
		if !ok {
			ix = make(map[string]int, len(t.Entries))
			for k, e := range t.Entries {
				ix[e.Name] = k
			}
			f.index[n.hash] = ix
		}
		k, found := ix[part]
		if found {
			e := t.Entries[k]
			n = node{name: e.Name, mode: e.Mode, hash: e.Hash}
		}
		if !found {
			return node{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
	}
	return n, nil
}

func fsMode(m filemode.FileMode) fs.FileMode {
	switch m {
	case filemode.Dir:
		return fs.ModeDir | 0o755
	case filemode.Executable:
		return 0o755
	case filemode.Symlink:
		return fs.ModeSymlink | 0o777
	case filemode.Submodule:
		return fs.ModeIrregular
	default:
		return 0o644
	}
}

// info describes n; a blob's size comes from the object header. Called with
// the lock held.
func (f *treeFS) info(n node) (*fileInfo, error) {
	fi := &fileInfo{name: n.name, mode: fsMode(n.mode), mtime: f.mtime}
	if n.mode == filemode.Dir || n.mode == filemode.Submodule {
		return fi, nil
	}
	o, err := f.r.st.EncodedObject(plumbing.BlobObject, n.hash)
	if err != nil {
		f.r.noteCorrupt(err)
		return nil, err
	}
	fi.size = o.Size()
	return fi, nil
}

func (f *treeFS) readBlob(h plumbing.Hash) ([]byte, error) {
	o, err := f.r.st.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		f.r.noteCorrupt(err)
		return nil, err
	}
	rd, err := o.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	b := make([]byte, 0, o.Size())
	buf := bytes.NewBuffer(b)
	if _, err := io.Copy(buf, rd); err != nil {
		f.r.noteCorrupt(err)
		return nil, err
	}
	return buf.Bytes(), nil
}

func (f *treeFS) entries(n node, dir string) ([]fs.DirEntry, error) {
	t, err := f.tree(n.hash)
	if err != nil {
		return nil, err
	}
	out := make([]fs.DirEntry, len(t.Entries))
	for i, e := range t.Entries {
		out[i] = &dirEntry{f: f, path: path.Join(dir, e.Name), n: node{name: e.Name, mode: e.Mode, hash: e.Hash}}
	}
	// Git orders a directory as if its name ended in "/"; fs.ReadDir
	// promises plain name order.
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// Open opens name; see FS for symlinks.
func (f *treeFS) Open(name string) (fs.File, error) {
	if err := f.lock(); err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	defer f.unlock()
	n, err := f.resolve("open", name)
	if err != nil {
		return nil, err
	}
	switch n.mode {
	case filemode.Dir:
		ents, err := f.entries(n, name)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &dirFile{info: &fileInfo{name: n.name, mode: fsMode(n.mode), mtime: f.mtime}, ents: ents, path: name}, nil
	case filemode.Symlink:
		return nil, &fs.PathError{Op: "open", Path: name, Err: ErrSymlink}
	case filemode.Submodule:
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("submodule cannot be opened")}
	}
	b, err := f.readBlob(n.hash)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &file{info: &fileInfo{name: n.name, mode: fsMode(n.mode), mtime: f.mtime, size: int64(len(b))}, rd: bytes.NewReader(b)}, nil
}

// ReadFile reads name; see FS for symlinks.
func (f *treeFS) ReadFile(name string) ([]byte, error) {
	if err := f.lock(); err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	defer f.unlock()
	n, err := f.resolve("readfile", name)
	if err != nil {
		return nil, err
	}
	switch n.mode {
	case filemode.Dir:
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: errors.New("is a directory")}
	case filemode.Symlink:
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: ErrSymlink}
	case filemode.Submodule:
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: errors.New("submodule cannot be read")}
	}
	b, err := f.readBlob(n.hash)
	if err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	return b, nil
}

// ReadDir lists directory name sorted by file name.
func (f *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := f.lock(); err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	defer f.unlock()
	n, err := f.resolve("readdir", name)
	if err != nil {
		return nil, err
	}
	if n.mode != filemode.Dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	ents, err := f.entries(n, name)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	return ents, nil
}

// Stat describes name itself; a symlink is reported, not followed.
func (f *treeFS) Stat(name string) (fs.FileInfo, error) {
	if err := f.lock(); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	defer f.unlock()
	n, err := f.resolve("stat", name)
	if err != nil {
		return nil, err
	}
	fi, err := f.info(n)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	return fi, nil
}

type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (i *fileInfo) Name() string       { return i.name }
func (i *fileInfo) Size() int64        { return i.size }
func (i *fileInfo) Mode() fs.FileMode  { return i.mode }
func (i *fileInfo) ModTime() time.Time { return i.mtime }
func (i *fileInfo) IsDir() bool        { return i.mode.IsDir() }
func (i *fileInfo) Sys() any           { return nil }

type dirEntry struct {
	f    *treeFS
	path string
	n    node
}

func (d *dirEntry) Name() string      { return d.n.name }
func (d *dirEntry) IsDir() bool       { return d.n.mode == filemode.Dir }
func (d *dirEntry) Type() fs.FileMode { return fsMode(d.n.mode).Type() }
func (d *dirEntry) String() string    { return fs.FormatDirEntry(d) }

func (d *dirEntry) Info() (fs.FileInfo, error) {
	if err := d.f.lock(); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: d.path, Err: err}
	}
	defer d.f.unlock()
	fi, err := d.f.info(d.n)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: d.path, Err: err}
	}
	return fi, nil
}

type file struct {
	info *fileInfo
	rd   *bytes.Reader
}

func (f *file) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *file) Read(p []byte) (int, error) { return f.rd.Read(p) }
func (f *file) Close() error               { return nil }
func (f *file) Seek(off int64, whence int) (int64, error) {
	return f.rd.Seek(off, whence)
}
func (f *file) ReadAt(p []byte, off int64) (int, error) { return f.rd.ReadAt(p, off) }

type dirFile struct {
	info *fileInfo
	path string
	ents []fs.DirEntry
	off  int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: errors.New("is a directory")}
}

func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.ents[d.off:]
	if n <= 0 {
		d.off = len(d.ents)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	if n > len(rest) {
		n = len(rest)
	}
	d.off += n
	return rest[:n], nil
}

// ContentID names the content of the regular file name without reading it:
// its blob hash. Two files with the same ID have the same bytes, so a loader
// can reuse what it made of them (schema.WithParseCache).
func (f *treeFS) ContentID(name string) (string, error) {
	if err := f.lock(); err != nil {
		return "", &fs.PathError{Op: "contentid", Path: name, Err: err}
	}
	defer f.unlock()
	n, err := f.resolve("contentid", name)
	if err != nil {
		return "", err
	}
	if n.mode != filemode.Regular && n.mode != filemode.Executable {
		return "", &fs.PathError{Op: "contentid", Path: name, Err: errors.New("not a regular file")}
	}
	return n.hash.String(), nil
}
