package fleetsync

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/reconcile"
)

// fakeProvider answers List with list, counting calls.
type fakeProvider struct {
	calls atomic.Int32
	list  func(ctx context.Context) ([]reconcile.Machine, error)
}

func (f *fakeProvider) Name() string { return "dc1" }
func (f *fakeProvider) List(ctx context.Context) ([]reconcile.Machine, error) {
	f.calls.Add(1)
	return f.list(ctx)
}
func (f *fakeProvider) Create(ctx context.Context, _ []reconcile.MachineSpec) ([]reconcile.Machine, error) {
	f.calls.Add(1)
	return f.list(ctx)
}
func (f *fakeProvider) Delete(ctx context.Context, _ []string) error {
	f.calls.Add(1)
	_, err := f.list(ctx)
	return err
}

func TestBoundNamesTheCallThatHung(t *testing.T) {
	p := &fakeProvider{list: func(ctx context.Context) ([]reconcile.Machine, error) {
		<-ctx.Done() // a peer that never answers
		return nil, ctx.Err()
	}}
	w := Bound(reconcile.World{Providers: map[string]reconcile.Provider{"dc1": p}}, 20*time.Millisecond)
	_, err := w.Providers["dc1"].List(context.Background())
	var hung *reconcile.HungError
	if !errors.As(err, &hung) || err.Error() != "provider dc1: list machines: no answer within 20ms" || reconcile.Classify(err) != reconcile.ReactRetry {
		t.Fatalf("List of a hung provider: %v (%v)", err, reconcile.Classify(err))
	}
	err = w.Providers["dc1"].Delete(context.Background(), []string{"vm-1"})
	if err == nil || err.Error() != "provider dc1: delete machines: no answer within 100ms" {
		t.Fatalf("Delete of a hung provider: %v, want the change deadline (5 × the call deadline)", err)
	}

	// The sync's own deadline cutting a call short names the call too.
	sync, cancel := context.WithTimeoutCause(context.Background(), time.Millisecond, &reconcile.HungError{Call: "sync", After: time.Millisecond})
	defer cancel()
	if _, err := w.Providers["dc1"].List(sync); err == nil || err.Error() != "provider dc1: list machines: sync: no answer within 1ms" {
		t.Fatalf("List cut short by the sync's deadline: %v", err)
	}
}

func TestRefusedCredentialsAreNotTriedAgain(t *testing.T) {
	refused := reconcile.Stalled(&reconcile.CredentialsError{Peer: "AWS", Err: errors.New("AuthFailure")})
	p := &fakeProvider{list: func(context.Context) ([]reconcile.Machine, error) { return nil, refused }}
	other := &fakeProvider{list: func(context.Context) ([]reconcile.Machine, error) { return nil, nil }}
	w := Bound(reconcile.World{Providers: map[string]reconcile.Provider{"aws-eu": p, "dc2": other}}, time.Minute)
	for i := 0; i < 3; i++ {
		if _, err := w.Providers["aws-eu"].List(context.Background()); !errors.Is(err, refused) {
			t.Fatalf("List %d: %v", i+1, err)
		}
		if _, err := w.Providers["dc2"].List(context.Background()); err != nil {
			t.Fatalf("another provider's List %d: %v", i+1, err)
		}
	}
	if _, err := w.Providers["aws-eu"].Create(context.Background(), nil); !errors.Is(err, refused) {
		t.Fatalf("Create: %v", err)
	}
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("the refusing provider was called %d times, want 1", n)
	}
	if n := other.calls.Load(); n != 3 {
		t.Fatalf("the other provider was called %d times, want 3", n)
	}
	// A world built anew (new credentials) asks again.
	w = Bound(reconcile.World{Providers: map[string]reconcile.Provider{"aws-eu": p}}, time.Minute)
	_, _ = w.Providers["aws-eu"].List(context.Background())
	if n := p.calls.Load(); n != 2 {
		t.Fatalf("a new world called the provider %d times in all, want 2", n)
	}
}

// A git remote that refuses the token is not asked again until the token
// file changes.
func TestRefusedGitTokenIsNotTriedAgainUntilTheFileChanges(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(srv.Close)
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("old-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := &RepoSource{Options: fgit.Options{URL: srv.URL + "/fleet.git", Dir: t.TempDir(), Auth: fgit.Auth{TokenFile: token},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	t.Cleanup(func() { _ = src.Close() })
	for i := 0; i < 3; i++ {
		_, err := src.Snapshot(context.Background())
		var ce *reconcile.CredentialsError
		if !errors.As(err, &ce) || !errors.Is(err, fgit.ErrAuth) || reconcile.Classify(classifyGit(err)) != reconcile.ReactStall {
			t.Fatalf("Snapshot %d: %v", i+1, err)
		}
		if !strings.Contains(err.Error(), "refused the credentials from file:"+token+": fix them") || strings.Contains(err.Error(), "old-token") {
			t.Fatalf("Snapshot %d: %q", i+1, err)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("the remote was asked %d times, want 1", n)
	}
	if err := os.WriteFile(token, []byte("new-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _ = src.Snapshot(context.Background())
	if n := hits.Load(); n != 2 {
		t.Fatalf("after the token changed the remote was asked %d times in all, want 2", n)
	}
}
