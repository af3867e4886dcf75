package git

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

func TestFetch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r, _ := open(t, f.bare, Options{})

	first := mustFetch(t, r)
	if first.Head != f.head("main") || !first.Changed || first.Previous != "" || first.Downloaded {
		t.Fatalf("first Fetch after clone = %+v, want head %s, changed, nothing downloaded", first, f.head("main"))
	}
	if first.Desired != first.Head || !first.DesiredChanged {
		t.Fatalf("first Fetch desired = %s (changed %v), want %s", first.Desired, first.DesiredChanged, first.Head)
	}

	steps := []struct {
		name           string
		files          map[string]string // nil: no new commit
		wantChanged    bool
		wantDownloaded bool
	}{
		{name: "unchanged remote downloads nothing"},
		{name: "new commit is fetched", files: map[string]string{"clusters/qa/pr-1.yaml": "name: pr-1\n"}, wantChanged: true, wantDownloaded: true},
		{name: "unchanged again"},
		{name: "removal is fetched", files: map[string]string{"clusters/qa/pr-1.yaml": ""}, wantChanged: true, wantDownloaded: true},
	}
	prev := first.Head
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.files != nil {
				f.commit(s.name, s.files)
			}
			packs := packFiles(t, r.dir)
			res := mustFetch(t, r)
			if res.Head != f.head("main") || res.Previous != prev || res.Changed != s.wantChanged || res.Downloaded != s.wantDownloaded {
				t.Fatalf("Fetch = %+v, want head %s previous %s changed %v downloaded %v", res, f.head("main"), prev, s.wantChanged, s.wantDownloaded)
			}
			if !s.wantDownloaded && packFiles(t, r.dir) != packs {
				t.Fatalf("an unchanged fetch wrote pack files")
			}
			prev = res.Head
		})
	}

	t.Run("tree of the fetched commit", func(t *testing.T) {
		fsys, err := r.FS(context.Background(), prev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fs.Stat(fsys, "clusters/qa/pr-1.yaml"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("removed file: Stat error = %v, want not exist", err)
		}
		b, err := fs.ReadFile(fsys, "clusters/payments/prod.yaml")
		if err != nil || string(b) != "name: prod\nteam: payments\n" {
			t.Fatalf("ReadFile = %q, %v", b, err)
		}
	})
}

func packFiles(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "objects", "pack"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, ",")
}

func TestFetchKeepsOneClone(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	dir := t.TempDir()
	r, logs := open(t, f.bare, Options{Dir: dir})
	mustFetch(t, r)
	r.Close()
	head := f.commit("more", map[string]string{"clusters/qa/a.yaml": "name: a\n"})

	r2, _ := open(t, f.bare, Options{Dir: dir})
	if strings.Contains(logs.String(), "re-cloning") {
		t.Fatalf("a healthy work directory was re-cloned:\n%s", logs)
	}
	res := mustFetch(t, r2)
	if res.Head != head || !res.Downloaded {
		t.Fatalf("Fetch after reopen = %+v, want %s downloaded incrementally", res, head)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name    string
		url     string
		branch  string
		want    string
		wantErr error
	}{
		{name: "missing branch", url: f.bare, branch: "nope", want: "git: clone " + f.bare + " branch nope: branch not found", wantErr: ErrBranchNotFound},
		{name: "missing repository", url: filepath.Join(t.TempDir(), "none.git"), branch: "main", want: "git: clone "},
		{name: "unsupported protocol", url: "git://example.com/fleet.git", branch: "main", want: "unsupported protocol"},
		{name: "invalid branch", url: f.bare, branch: "a..b", want: "invalid branch name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), Options{URL: tt.url, Branch: tt.branch, Dir: t.TempDir(), Logger: testLogger(&logbuf.Buffer{})})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open error = %v, want it to contain %q", err, tt.want)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open error = %v, want errors.Is %v", err, tt.wantErr)
			}
		})
	}
}

func TestTreeFS(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.commit("layout", map[string]string{
		"clusters/qa/pr-77.yaml":  "name: pr-77\n",
		"clusters/qa/z/deep.yaml": "deep\n",
		"docs/README.md":          "# Fleet\n",
		"bin/tool.sh":             "#!/bin/sh\n",
	})
	git(t, f.work, "update-index", "--chmod=+x", "bin/tool.sh")
	git(t, f.work, "commit", "-q", "-m", "exec")
	f.push()
	plain := f.head("main")

	if err := os.Symlink("../payments/prod.yaml", filepath.Join(f.work, "clusters/qa/link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../docs", filepath.Join(f.work, "clusters/linkdir")); err != nil {
		t.Fatal(err)
	}
	withLinks := f.commit("symlinks", nil)

	r, _ := open(t, f.bare, Options{})
	ctx := context.Background()

	t.Run("fstest", func(t *testing.T) {
		fsys, err := r.FS(ctx, plain)
		if err != nil {
			t.Fatal(err)
		}
		if err := fstest.TestFS(fsys, "fleet.yaml", "clusters/qa/pr-77.yaml", "clusters/qa/z/deep.yaml", "docs/README.md", "bin/tool.sh"); err != nil {
			t.Fatal(err)
		}
		fi, err := fs.Stat(fsys, "bin/tool.sh")
		if err != nil || fi.Mode() != 0o755 || fi.Size() != int64(len("#!/bin/sh\n")) {
			t.Fatalf("Stat(bin/tool.sh) = %v, %v; want mode 0755 size 10", fi, err)
		}
	})

	fsys, err := r.FS(ctx, withLinks)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		run  func() error
	}{
		{"ReadDir reports a file symlink", func() error {
			ents, err := fs.ReadDir(fsys, "clusters/qa")
			if err != nil {
				return err
			}
			for _, e := range ents {
				if e.Name() == "link.yaml" {
					if e.Type()&fs.ModeSymlink == 0 {
						return errors.New("link.yaml type is not a symlink")
					}
					return nil
				}
			}
			return errors.New("link.yaml not listed")
		}},
		{"ReadDir reports a directory symlink", func() error {
			ents, err := fs.ReadDir(fsys, "clusters")
			if err != nil {
				return err
			}
			for _, e := range ents {
				if e.Name() == "linkdir" {
					if e.Type()&fs.ModeSymlink == 0 || e.IsDir() {
						return errors.New("linkdir is not reported as a symlink")
					}
					return nil
				}
			}
			return errors.New("linkdir not listed")
		}},
		{"Stat does not follow", func() error {
			fi, err := fs.Stat(fsys, "clusters/qa/link.yaml")
			if err != nil {
				return err
			}
			if fi.Mode()&fs.ModeSymlink == 0 {
				return errors.New("Stat followed the link")
			}
			return nil
		}},
		{"Open refuses a symlink", func() error {
			_, err := fsys.Open("clusters/qa/link.yaml")
			if !errors.Is(err, ErrSymlink) {
				return errors.New("Open error is not ErrSymlink: " + errString(err))
			}
			return nil
		}},
		{"ReadFile refuses a symlink", func() error {
			_, err := fs.ReadFile(fsys, "clusters/qa/link.yaml")
			if !errors.Is(err, ErrSymlink) {
				return errors.New("ReadFile error is not ErrSymlink: " + errString(err))
			}
			return nil
		}},
		{"paths through a symlinked directory are refused", func() error {
			_, err := fs.ReadFile(fsys, "clusters/linkdir/README.md")
			if !errors.Is(err, ErrSymlink) {
				return errors.New("error is not ErrSymlink: " + errString(err))
			}
			return nil
		}},
		{"WalkDir does not descend into links", func() error {
			var seen []string
			err := fs.WalkDir(fsys, "clusters", func(p string, d fs.DirEntry, err error) error {
				seen = append(seen, p)
				return err
			})
			if err != nil {
				return err
			}
			for _, p := range seen {
				if strings.HasPrefix(p, "clusters/linkdir/") {
					return errors.New("walked into " + p)
				}
			}
			return nil
		}},
		{"invalid paths are rejected", func() error {
			for _, p := range []string{"/fleet.yaml", "../x", "clusters/", ""} {
				if _, err := fsys.Open(p); !errors.Is(err, fs.ErrInvalid) {
					return errors.New(p + ": error is not ErrInvalid: " + errString(err))
				}
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestCreationTimes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	at := func(min int) time.Time { return time.Date(2025, 3, 1, 10, min, 0, 0, time.UTC) }
	initial := f.head("main")
	cA := f.commitAt(at(1), "add a", map[string]string{"clusters/qa/a.yaml": "a1\n", "docs/x.md": "x\n"})
	f.commitAt(at(2), "add b", map[string]string{"clusters/qa/b.yaml": "b\n"})
	f.commitAt(at(3), "edit a", map[string]string{"clusters/qa/a.yaml": "a2\n"})
	cDel := f.commitAt(at(4), "delete b", map[string]string{"clusters/qa/b.yaml": ""})
	f.commitAt(at(5), "re-add b", map[string]string{"clusters/qa/b.yaml": "b again\n"})

	// A merge request: c is committed on a side branch at minute 6 and
	// merged at minute 9; its cluster exists since the merge.
	git(t, f.work, "checkout", "-q", "-b", "mr")
	f.commitLocal(at(6), "add c on a branch", map[string]string{"clusters/dev/c.yaml": "c\n"})
	git(t, f.work, "checkout", "-q", "main")
	f.commitAt(at(7), "add d", map[string]string{"clusters/dev/d.yaml": "d\n"})
	env := []string{"GIT_AUTHOR_DATE=" + at(9).Format(time.RFC3339), "GIT_COMMITTER_DATE=" + at(9).Format(time.RFC3339)}
	if _, err := runGit(f.work, env, "merge", "-q", "--no-ff", "-m", "merge mr", "mr"); err != nil {
		t.Fatal(err)
	}
	f.push()
	head := f.head("main")
	t0 := f.clock // the initial commit's time

	r, _ := open(t, f.bare, Options{})
	ctx := context.Background()
	want := map[string]map[string]time.Time{
		initial: {"clusters/payments/prod.yaml": t0},
		cA:      {"clusters/payments/prod.yaml": t0, "clusters/qa/a.yaml": at(1)},
		cDel:    {"clusters/payments/prod.yaml": t0, "clusters/qa/a.yaml": at(1)},
		head: {
			"clusters/payments/prod.yaml": t0,
			"clusters/qa/a.yaml":          at(1),
			"clusters/qa/b.yaml":          at(5),
			"clusters/dev/c.yaml":         at(9),
			"clusters/dev/d.yaml":         at(7),
		},
	}
	tests := []struct {
		name   string
		commit string
		prefix string
	}{
		{"root commit", initial, "clusters/"},
		{"first addition", cA, "clusters/"},
		{"deleted file is gone", cDel, "clusters/"},
		{"incremental from an older commit", head, "clusters/"},
		{"prefix without slash", head, "clusters"},
		{"back to an older commit", cA, "clusters/"},
		{"head again", head, "clusters/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.CreationTimes(ctx, tt.commit, tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			assertTimes(t, got, want[tt.commit])
		})
	}
	t.Run("cold cache agrees with incremental", func(t *testing.T) {
		r2, _ := open(t, f.bare, Options{})
		got, err := r2.CreationTimes(ctx, head, "clusters/")
		if err != nil {
			t.Fatal(err)
		}
		assertTimes(t, got, want[head])
	})
	t.Run("result is the caller's", func(t *testing.T) {
		got, _ := r.CreationTimes(ctx, head, "clusters/")
		clear(got)
		again, _ := r.CreationTimes(ctx, head, "clusters/")
		assertTimes(t, again, want[head])
	})
	t.Run("whole tree", func(t *testing.T) {
		got, err := r.CreationTimes(ctx, head, "")
		if err != nil {
			t.Fatal(err)
		}
		if !got["docs/x.md"].Equal(at(1)) || !got["fleet.yaml"].Equal(t0) {
			t.Fatalf("CreationTimes(\"\") = %v", got)
		}
	})
}

func assertTimes(t *testing.T, got, want map[string]time.Time) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d paths %v, want %d %v", len(got), got, len(want), want)
	}
	for p, w := range want {
		if g, ok := got[p]; !ok || !g.Equal(w) {
			t.Errorf("%s: got %v, want %v", p, g, w)
		}
	}
}

func TestFetchFollowsTheStatusBranch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r, _ := open(t, f.bare, Options{})
	ctx := context.Background()
	if res := mustFetch(t, r); res.StatusListed {
		t.Fatalf("Fetch before any status = %+v, want the status branch not followed", res)
	}
	st, err := r.WriteStatus(ctx, files("a.yaml", "x: 1\n"), Message{Subject: "status: a"})
	if err != nil {
		t.Fatal(err)
	}
	if res := mustFetch(t, r); !res.StatusListed || res.StatusHead != st.Commit || res.Downloaded {
		t.Fatalf("Fetch after WriteStatus = %+v, want status head %s and nothing downloaded", res, st.Commit)
	}

	// Someone else commits on the status branch: the next fetch brings it.
	git(t, f.work, "fetch", "-q", "origin", DefaultStatusBranch)
	git(t, f.work, "checkout", "-q", "-b", "edit", "FETCH_HEAD")
	theirs := f.commitLocal(f.clock.Add(time.Minute), "status: edited by hand", map[string]string{"status/a.yaml": "x: 2\n"})
	git(t, f.work, "push", "-q", "origin", "HEAD:"+DefaultStatusBranch)
	git(t, f.work, "checkout", "-q", "main")
	res := mustFetch(t, r)
	if !res.StatusListed || res.StatusHead != theirs || res.Changed || res.Downloaded {
		t.Fatalf("Fetch after a hand edit of status = %+v, want status head %s, tracked branch unchanged", res, theirs)
	}
	got, commit, err := r.ReadStatus(ctx)
	if err != nil || commit != theirs || string(got["status/a.yaml"]) != "x: 2\n" {
		t.Fatalf("ReadStatus = %q, %s, %v", got, commit, err)
	}

	// The status branch is deleted on the remote.
	git(t, f.bare, "branch", "-D", DefaultStatusBranch)
	res = mustFetch(t, r)
	if !res.StatusListed || res.StatusHead != "" || res.Head != f.head("main") {
		t.Fatalf("Fetch after the status branch was deleted = %+v, want it listed as deleted", res)
	}
	if res := mustFetch(t, r); res.StatusListed {
		t.Fatalf("second Fetch after the deletion = %+v, want the status branch no longer followed", res)
	}
}
