package fleetsync

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteStatusDir(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "precious.yaml")
	if err := os.WriteFile(outside, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	for p, data := range map[string]string{"status/qa/old.yaml": "gone", "status/notes.txt": "kept", "status/qa/notes.md": "kept"} {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string][]byte{"status/qa/new.yaml": []byte("new\n"), "status/SUMMARY.md": []byte("# Fleet\n")}
	if changed, err := writeStatusDir(dir, files); err != nil || !changed {
		t.Fatalf("writeStatusDir = %v, %v", changed, err)
	}
	for p, want := range map[string]string{"status/qa/new.yaml": "new\n", "status/SUMMARY.md": "# Fleet\n", "status/notes.txt": "kept", "status/qa/notes.md": "kept"} {
		if got, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "status/qa/old.yaml")); !os.IsNotExist(err) {
		t.Errorf("status of a removed cluster is still there: %v", err)
	}
	if changed, err := writeStatusDir(dir, files); err != nil || changed {
		t.Errorf("writing the same files again: changed %v, %v", changed, err)
	}
	if _, err := writeStatusDir(dir, map[string][]byte{"../escape.yaml": []byte("x")}); err == nil {
		t.Error("a path outside status/ was accepted")
	}
	if _, err := writeStatusDir(dir, map[string][]byte{"status/../../escape.yaml": []byte("x")}); err == nil {
		t.Error("a path climbing out of status/ was accepted")
	}

	t.Run("a link anywhere in status is refused", func(t *testing.T) {
		for _, link := range []string{"status", "status/qa", "status/qa/new.yaml"} {
			d := t.TempDir()
			target := t.TempDir()
			if err := os.MkdirAll(filepath.Join(d, filepath.Dir(link)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(d, link)); err != nil {
				t.Fatal(err)
			}
			_, err := writeStatusDir(d, files)
			if err == nil || !strings.Contains(err.Error(), "symbolic link") {
				t.Errorf("%s as a link: %v", link, err)
			}
			if ents, _ := os.ReadDir(target); len(ents) != 0 {
				t.Errorf("%s as a link: wrote %d entries outside DIR", link, len(ents))
			}
		}
	})
}
