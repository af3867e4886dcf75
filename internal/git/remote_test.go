package git

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"https://gitlab.example.com/platform/fleet.git", "https://gitlab.example.com/platform/fleet.git"},
		{"https://oauth2:glpat-abc@gitlab.example.com/platform/fleet.git", "https://gitlab.example.com/platform/fleet.git"},
		{"https://x-access-token:ghs_%zz@github.com/acme/fleet", "https://github.com/acme/fleet"},
		{"http://user@127.0.0.1:8080/fleet.git?x=y", "http://127.0.0.1:8080/fleet.git?x=y"},
		{"ssh://git@gitlab.example.com:2222/platform/fleet.git", "ssh://gitlab.example.com:2222/platform/fleet.git"},
		{"git@github.com:acme/fleet.git", "github.com:acme/fleet.git"},
		{"/var/lib/fleet.git", "/var/lib/fleet.git"},
		{"file:///var/lib/fleet.git", "file:///var/lib/fleet.git"},
		{"/srv/git/we@ird/fleet.git", "/srv/git/we@ird/fleet.git"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := redactURL(tt.in); got != tt.want {
				t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		err     error
		secrets []string
		kind    error
		want    string
	}{
		{"authentication", transport.ErrAuthenticationRequired, nil, ErrAuth, "authentication required"},
		{"authorization", transport.ErrAuthorizationFailed, nil, ErrAuth, "authorization failed"},
		{"repository", transport.ErrRepositoryNotFound, nil, ErrRepositoryNotFound, "repository not found"},
		{"secret removed", errors.New(`Get "https://u:tok-123@h/x": EOF`), []string{"tok-123", ""}, nil, `Get "https://u:REDACTED@h/x": EOF`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err, tt.secrets)
			if got.Error() != tt.want {
				t.Errorf("message = %q, want %q", got.Error(), tt.want)
			}
			if tt.kind != nil && !errors.Is(got, tt.kind) {
				t.Errorf("%v is not %v", got, tt.kind)
			}
			for _, s := range tt.secrets {
				for e := error(got); e != nil && s != ""; e = errors.Unwrap(e) {
					if strings.Contains(e.Error(), s) {
						t.Errorf("secret reachable through the chain: %q", e)
					}
				}
			}
		})
	}
}

// TestConcurrentUse reads trees from several goroutines while fetches and
// status writes run; go test -race checks the locking.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r, _ := open(t, f.bare, Options{})
	ctx := context.Background()
	head := mustFetch(t, r).Head
	fsys, err := r.FS(ctx, head)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := fs.ReadFile(fsys, "clusters/payments/prod.yaml"); err != nil {
					t.Error(err)
					return
				}
				if _, err := fs.ReadDir(fsys, "clusters"); err != nil {
					t.Error(err)
					return
				}
				if _, err := r.CreationTimes(ctx, head, "clusters/"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < 3; i++ {
		f.commit("more", map[string]string{"clusters/qa/x.yaml": strings.Repeat("x", i+1)})
		mustFetch(t, r)
		if _, err := r.WriteStatus(ctx, files("qa/x.yaml", strings.Repeat("y", i+1)), Message{Subject: "status: qa/x"}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}
