package git

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

// TestMain gives the git CLI a clean, empty environment: no system or global
// configuration and no identity, as on a fresh CI machine.
func TestMain(m *testing.M) {
	home, err := os.MkdirTemp("", "fleetd-git-test-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for k, v := range map[string]string{
		"HOME":                home,
		"XDG_CONFIG_HOME":     filepath.Join(home, ".config"),
		"GIT_CONFIG_NOSYSTEM": "1",
		"GIT_CONFIG_GLOBAL":   os.DevNull,
		"GIT_TERMINAL_PROMPT": "0",
		"GIT_ASKPASS":         "",
		"SSH_ASKPASS":         "",
		"LC_ALL":              "C",
	} {
		os.Setenv(k, v)
	}
	for _, k := range []string{"SSH_AUTH_SOCK", "SSH_KNOWN_HOSTS", "GIT_DIR", "GIT_WORK_TREE",
		"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"} {
		os.Unsetenv(k)
	}
	code := m.Run()
	cleanupBenchFixture()
	os.RemoveAll(home)
	os.Exit(code)
}

// gitIdentity is passed to every git command, so none needs a global one.
var gitIdentity = []string{
	"-c", "user.name=Human Dev", "-c", "user.email=dev@example.com",
	"-c", "init.defaultBranch=main", "-c", "commit.gpgSign=false",
	"-c", "protocol.file.allow=always", "-c", "gc.auto=0", "-c", "maintenance.auto=false",
}

// runGit runs the git CLI in dir with extra environment and returns its
// trimmed standard output.
func runGit(dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", append(append([]string{}, gitIdentity...), args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := runGit(dir, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fixture is a bare "server" repository and a working clone people commit in.
type fixture struct {
	t    testing.TB
	bare string // the remote
	work string // a person's clone
	// clock makes commit times deterministic: each commit is one minute
	// after the previous one.
	clock time.Time
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{
		t:     t,
		bare:  filepath.Join(root, "fleet.git"),
		work:  filepath.Join(root, "work"),
		clock: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC),
	}
	git(t, root, "init", "-q", "--bare", f.bare)
	git(t, f.bare, "config", "core.logAllRefUpdates", "true")
	git(t, f.bare, "config", "http.receivepack", "true")
	// No "git gc --auto" after every push: it only slows the tests.
	git(t, f.bare, "config", "receive.autogc", "false")
	git(t, f.bare, "config", "core.fsync", "none")
	git(t, root, "init", "-q", f.work)
	git(t, f.work, "remote", "add", "origin", f.bare)
	f.commit("initial fleet", map[string]string{
		"fleet.yaml":                  "apiVersion: fleetd.io/v1alpha1\nkind: Fleet\nname: acme\n",
		"clusters/payments/prod.yaml": "name: prod\nteam: payments\n",
	})
	return f
}

// commit writes files (an empty content deletes the file), commits them at
// the next tick of the fixture's clock, pushes, and returns the commit.
func (f *fixture) commit(msg string, files map[string]string) string {
	f.t.Helper()
	f.clock = f.clock.Add(time.Minute)
	return f.commitAt(f.clock, msg, files)
}

func (f *fixture) commitAt(when time.Time, msg string, files map[string]string) string {
	f.t.Helper()
	f.commitLocal(when, msg, files)
	f.push()
	return git(f.t, f.work, "rev-parse", "HEAD")
}

// commitLocal commits files in the work clone without pushing.
func (f *fixture) commitLocal(when time.Time, msg string, files map[string]string) string {
	f.t.Helper()
	for p, content := range files {
		full := filepath.Join(f.work, filepath.FromSlash(p))
		if content == "" {
			if err := os.RemoveAll(full); err != nil {
				f.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			f.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	date := []string{"GIT_AUTHOR_DATE=" + when.Format(time.RFC3339), "GIT_COMMITTER_DATE=" + when.Format(time.RFC3339)}
	for _, args := range [][]string{{"add", "-A"}, {"commit", "-q", "--allow-empty", "-m", msg}} {
		if _, err := runGit(f.work, date, args...); err != nil {
			f.t.Fatal(err)
		}
	}
	return git(f.t, f.work, "rev-parse", "HEAD")
}

// push pushes the work clone's main, rebasing on what others pushed.
func (f *fixture) push() {
	f.t.Helper()
	if _, err := runGit(f.work, nil, "push", "-q", "origin", "HEAD:main"); err != nil {
		if _, err := runGit(f.work, nil, "pull", "-q", "--rebase", "origin", "main"); err != nil {
			f.t.Fatal(err)
		}
		git(f.t, f.work, "push", "-q", "origin", "HEAD:main")
	}
}

// head returns the bare repository's commit of branch, "" when missing.
func (f *fixture) head(branch string) string {
	out, err := runGit(f.bare, nil, "rev-parse", "-q", "--verify", "refs/heads/"+branch)
	if err != nil {
		return ""
	}
	return out
}

func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// open opens a Repo on url with a fresh work directory unless opts set one.
func open(t testing.TB, url string, opts Options) (*Repo, *logbuf.Buffer) {
	t.Helper()
	logs := &logbuf.Buffer{}
	opts.URL = url
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(logs)
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return time.Date(2025, 6, 1, 8, 30, 0, 0, time.UTC) }
	}
	r, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r, logs
}

func mustFetch(t testing.TB, r *Repo) FetchResult {
	t.Helper()
	res, err := r.Fetch(context.Background())
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return res
}
