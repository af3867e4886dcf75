package git

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

const gitHTTPBackend = "/usr/lib/git-core/git-http-backend"

// httpGit serves the repositories under root with git http-backend, behind
// a basic-auth token check, and counts the requests it served.
type httpGit struct {
	url string

	mu       sync.Mutex
	requests []string // "GET info/refs", "POST git-upload-pack", …
	users    []string
}

func startHTTPGit(t testing.TB, root, token string) *httpGit {
	t.Helper()
	if _, err := os.Stat(gitHTTPBackend); err != nil {
		t.Skipf("git http-backend not installed: %v", err)
	}
	hg := &httpGit{}
	env := []string{
		"GIT_PROJECT_ROOT=" + root,
		"GIT_HTTP_EXPORT_ALL=1",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + os.DevNull,
		"HOME=" + os.Getenv("HOME"),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		user, pass, ok := req.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(pass), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="fleet"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		hg.mu.Lock()
		hg.requests = append(hg.requests, req.Method+" "+filepath.Base(req.URL.Path))
		hg.users = append(hg.users, user)
		hg.mu.Unlock()
		// http-backend serves receive-pack to authenticated users only.
		h := &cgi.Handler{Path: gitHTTPBackend, Env: append(slices.Clone(env), "REMOTE_USER="+user)}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	hg.url = srv.URL
	return hg
}

// take returns and forgets the requests served so far.
func (hg *httpGit) take() []string {
	hg.mu.Lock()
	defer hg.mu.Unlock()
	r := hg.requests
	hg.requests = nil
	return r
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	const token = "glpat-s3cr3t-Token-1234"
	f := newFixture(t)
	hg := startHTTPGit(t, filepath.Dir(f.bare), token)
	url := hg.url + "/fleet.git"
	secrets := t.TempDir()
	good := writeFile(t, secrets, "token", token+"\n")
	bad := writeFile(t, secrets, "bad-token", "wrong-Token-5678")

	r, logs := open(t, url, Options{Auth: Auth{TokenFile: good}})
	t.Cleanup(func() {
		if strings.Contains(logs.String(), token) {
			t.Errorf("the token was logged:\n%s", logs)
		}
	})
	ctx := context.Background()
	mustFetch(t, r)

	t.Run("unchanged poll is one reference listing", func(t *testing.T) {
		hg.take()
		res := mustFetch(t, r)
		if got := hg.take(); res.Downloaded || !slices.Equal(got, []string{"GET refs"}) {
			t.Fatalf("requests = %v (downloaded %v), want only the reference listing", got, res.Downloaded)
		}
	})
	t.Run("new commit is fetched", func(t *testing.T) {
		head := f.commit("add qa", map[string]string{"clusters/qa/a.yaml": "name: a\n"})
		res := mustFetch(t, r)
		if got := hg.take(); res.Head != head || !res.Downloaded || !slices.Equal(got, []string{"GET refs", "POST git-upload-pack"}) {
			t.Fatalf("Fetch = %+v, requests %v", res, got)
		}
	})
	t.Run("status is pushed", func(t *testing.T) {
		res, err := r.WriteStatus(ctx, files("qa/a.yaml", "phase: Ready\n"), Message{Subject: "status: qa/a Ready"})
		if err != nil || !res.Committed || f.head(DefaultStatusBranch) != res.Commit {
			t.Fatalf("WriteStatus = %+v, %v", res, err)
		}
	})
	t.Run("token user defaults to fleetd", func(t *testing.T) {
		hg.mu.Lock()
		defer hg.mu.Unlock()
		for _, u := range hg.users {
			if u != DefaultHTTPUser {
				t.Fatalf("basic-auth user %q, want %q", u, DefaultHTTPUser)
			}
		}
	})

	tests := []struct {
		name   string
		url    string
		auth   Auth
		secret string
	}{
		{"wrong token", url, Auth{TokenFile: bad}, "wrong-Token-5678"},
		{"no token", url, Auth{}, token},
		{"credentials in the URL", strings.Replace(url, "http://", "http://someone:pa55-in-url@", 1), Auth{}, "pa55-in-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" fails clearly", func(t *testing.T) {
			_, err := Open(ctx, Options{URL: tt.url, Auth: tt.auth, Dir: t.TempDir(), Logger: testLogger(&logbuf.Buffer{})})
			want := "git: clone " + url + " branch main: authentication required"
			if err == nil || !strings.HasPrefix(err.Error(), want) || !errors.Is(err, ErrAuth) {
				t.Fatalf("Open error = %v, want %q and ErrAuth", err, want)
			}
			if strings.Contains(err.Error(), tt.secret) || strings.Contains(err.Error(), token) {
				t.Fatalf("error %q contains a credential", err)
			}
			t.Log(err)
		})
	}
	t.Run("rotated token is read at the next connection", func(t *testing.T) {
		writeFile(t, secrets, "token", "rotated-but-wrong")
		_, err := r.Fetch(ctx)
		if !errors.Is(err, ErrAuth) || !strings.HasPrefix(err.Error(), "git: fetch "+url+" branch main: ") || strings.Contains(err.Error(), "rotated-but-wrong") {
			t.Fatalf("Fetch with a rotated wrong token: %v", err)
		}
		writeFile(t, secrets, "token", token)
		mustFetch(t, r)
	})
}
