package git

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func packPaths(t *testing.T, dir, ext string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "objects", "pack", "*"+ext))
	if err != nil || len(m) == 0 {
		t.Fatalf("no %s files in %s: %v", ext, dir, err)
	}
	return m
}

func TestRecoverBrokenWorkDir(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		corrupt func(t *testing.T, repoDir string)
	}{
		{"truncated pack", func(t *testing.T, d string) {
			for _, p := range packPaths(t, d, ".pack") {
				fi, _ := os.Stat(p)
				if err := os.Truncate(p, fi.Size()/2); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"deleted objects", func(t *testing.T, d string) {
			for _, p := range append(packPaths(t, d, ".pack"), packPaths(t, d, ".idx")...) {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"pack without index", func(t *testing.T, d string) {
			for _, p := range packPaths(t, d, ".idx") {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"garbage HEAD", func(t *testing.T, d string) {
			if err := os.WriteFile(filepath.Join(d, "HEAD"), []byte("\x00garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage branch ref", func(t *testing.T, d string) {
			if err := os.WriteFile(filepath.Join(d, "refs", "remotes", "origin", "main"), []byte("not a hash\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"missing config", func(t *testing.T, d string) {
			if err := os.Remove(filepath.Join(d, "config")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			dir := t.TempDir()
			r, _ := open(t, f.bare, Options{Dir: dir})
			mustFetch(t, r)
			r.Close()
			tt.corrupt(t, filepath.Join(dir, repoDirName))
			head := f.commit("after the crash", map[string]string{"clusters/qa/new.yaml": "name: new\n"})

			r2, logs := open(t, f.bare, Options{Dir: dir})
			if !strings.Contains(logs.String(), `msg="Work directory is broken, re-cloning"`) {
				t.Fatalf("no recovery logged:\n%s", logs)
			}
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "re-cloning") {
					t.Log(l)
				}
			}
			res := mustFetch(t, r2)
			if res.Head != head {
				t.Fatalf("Fetch after recovery = %s, want %s", res.Head, head)
			}
			fsys, err := r2.FS(context.Background(), res.Head)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fs.ReadFile(fsys, "clusters/qa/new.yaml"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRecoverLeavesHealthyWorkDir(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	dir := t.TempDir()
	r, _ := open(t, f.bare, Options{Dir: dir})
	mustFetch(t, r)
	r.Close()
	// Leftovers of a crash during a re-clone and a fetch.
	if err := os.MkdirAll(filepath.Join(dir, repoDirName+".tmp", "objects"), 0o755); err != nil {
		t.Fatal(err)
	}
	tmpPack := writeFile(t, filepath.Join(dir, repoDirName, "objects", "pack"), "tmp_pack_123", "PACK partial")
	unrelated := writeFile(t, dir, "unrelated.txt", "kept")

	_, logs := open(t, f.bare, Options{Dir: dir})
	if strings.Contains(logs.String(), "re-cloning") {
		t.Fatalf("healthy work directory re-cloned:\n%s", logs)
	}
	if _, err := os.Stat(filepath.Join(dir, repoDirName+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary clone left behind: %v", err)
	}
	if _, err := os.Stat(tmpPack); !os.IsNotExist(err) {
		t.Fatalf("temporary pack of a crashed fetch left behind: %v", err)
	}
	if _, err := os.Stat(unrelated); err != nil {
		t.Fatalf("a file not owned by fleetd was touched: %v", err)
	}
}

func TestRemoteURLChangeReclones(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	mirror := filepath.Join(t.TempDir(), "mirror.git")
	git(t, f.work, "clone", "-q", "--bare", f.bare, mirror)
	dir := t.TempDir()
	r, _ := open(t, f.bare, Options{Dir: dir})
	r.Close()
	_, logs := open(t, mirror, Options{Dir: dir})
	if !strings.Contains(logs.String(), "another remote URL") {
		t.Fatalf("no re-clone for a changed URL:\n%s", logs)
	}
}
