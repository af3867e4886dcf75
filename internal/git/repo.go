package git

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Defaults for Options.
const (
	DefaultBranch       = "main"
	DefaultStatusBranch = "fleet-status"
	DefaultAuthorName   = "fleetd"
	DefaultAuthorEmail  = "fleetd@localhost"
)

const (
	repoDirName  = "fleet.git"
	remoteName   = "origin"
	objectCache  = 64 * cache.MiByte
	maxPushTries = 5
)

// Signature is the identity of status commits (fleet.yaml status.author).
type Signature struct {
	Name  string
	Email string
}

// Options configure a Repo.
type Options struct {
	// URL is the fleet repo: https://, http://, ssh://, user@host:path,
	// file:// or a local path.
	URL string
	// Branch is the tracked branch holding the desired state (DefaultBranch
	// when empty).
	Branch string
	// StatusBranch receives status commits (DefaultStatusBranch when empty).
	// It may name Branch itself; see FetchResult.Desired.
	StatusBranch string
	// Author signs status commits, as author and committer (fleetd
	// <fleetd@localhost> when empty).
	Author Signature
	// Auth says where credentials are.
	Auth Auth
	// Dir is the work directory. fleetd keeps its bare clone in
	// Dir/fleet.git and re-clones into Dir/fleet.git.tmp, so Dir itself may
	// be a mount point. Nothing else in Dir is touched.
	Dir string
	// Logger receives operator logs (slog.Default() when nil).
	Logger *slog.Logger
	// Now is the clock for commit times (time.Now when nil).
	Now func() time.Time
	// Timeout bounds each exchange with the remote: a fetch, a push of
	// status, a clone (DefaultTimeout when zero). An exchange that runs out
	// of time fails with a *TimeoutError that names it.
	Timeout time.Duration
}

// Repo follows the fleet repo from a clone kept in a work directory, and
// writes status commits to it. Its methods are safe for concurrent use; they
// run one at a time.
type Repo struct {
	opts   Options
	log    *slog.Logger
	remote *remote
	dir    string

	mu sync.Mutex
	st *filesystem.Storage
	// objects caches decoded objects by hash for every storage opened on
	// the work directory: compaction reopens the storage, and a sync after
	// it must not inflate the whole tree again (that was the latency spike
	// every eight status pushes). A re-clone starts a new cache.
	objects cache.Object
	closed  bool
	// broken is set when an operation found the work directory corrupt;
	// the next Fetch re-clones.
	broken error

	packLimit   int // compaction threshold, maxPacks but in tests
	lastHead    plumbing.Hash
	lastDesired plumbing.Hash
	history     map[string]*historyCache
}

// Open opens the work directory, cloning the tracked branch when there is no
// clone yet, and re-cloning (with a warning log) when the clone is broken —
// for example by a crash in the middle of a fetch — or was made from another
// URL. It does not fetch an existing healthy clone; call Fetch.
func Open(ctx context.Context, opts Options) (*Repo, error) {
	if opts.Branch == "" {
		opts.Branch = DefaultBranch
	}
	if opts.StatusBranch == "" {
		opts.StatusBranch = DefaultStatusBranch
	}
	if opts.Author.Name == "" {
		opts.Author.Name = DefaultAuthorName
	}
	if opts.Author.Email == "" {
		opts.Author.Email = DefaultAuthorEmail
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	for _, b := range []string{opts.Branch, opts.StatusBranch} {
		if err := plumbing.NewBranchReferenceName(b).Validate(); err != nil {
			return nil, fmt.Errorf("git: open: invalid branch name %q", b)
		}
	}
	if opts.Dir == "" {
		return nil, errors.New("git: open: work directory is empty")
	}
	log := opts.Logger.With("remote", redactURL(opts.URL), "branch", opts.Branch)
	rm, err := newRemote(opts.URL, opts.Auth, opts.Timeout, log)
	if err != nil {
		return nil, fmt.Errorf("git: open: %w", err)
	}
	r := &Repo{
		opts:      opts,
		log:       log,
		remote:    rm,
		dir:       filepath.Join(opts.Dir, repoDirName),
		history:   map[string]*historyCache{},
		packLimit: maxPacks,
		objects:   cache.NewObjectLRU(objectCache),
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, r.errf("open", "", err)
	}
	// A crash during a re-clone leaves its temporary directory behind.
	_ = os.RemoveAll(r.dir + ".tmp")

	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := os.Stat(r.dir); errors.Is(err, os.ErrNotExist) {
		log.Info("Cloning fleet repo", "dir", r.dir)
		if err := r.cloneLocked(ctx); err != nil {
			return nil, err
		}
		return r, nil
	}
	st := r.openStorage(r.dir)
	if err := r.check(st); err != nil {
		_ = st.Close()
		if err := r.recoverLocked(ctx, err); err != nil {
			return nil, err
		}
		return r, nil
	}
	r.st = st
	// Temporary packs of a fetch that crashed are garbage.
	tmps, _ := filepath.Glob(filepath.Join(r.dir, "objects", "pack", "tmp_*"))
	for _, p := range tmps {
		_ = os.Remove(p)
	}
	return r, nil
}

// Close releases the work directory's open files. The Repo and the file
// systems it returned must not be used afterwards.
func (r *Repo) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if r.st != nil {
		return r.st.Close()
	}
	return nil
}

// openStorage opens the object store in dir with the Repo's object cache,
// keeping pack files open between reads (compaction keeps them few).
// ExclusiveAccess is not set: in go-git v5 it makes HasEncodedObject miss
// objects of packs written by this very storage.
func (r *Repo) openStorage(dir string) *filesystem.Storage {
	return filesystem.NewStorageWithOptions(osfs.New(dir), r.objects,
		filesystem.Options{MaxOpenDescriptors: 2*maxPacks + 8})
}

// bound gives one exchange with the remote, op, its deadline. An exchange
// with a local repository gets none and is not cancelled either: it is read
// from disk, not from a peer that can hang, and go-git's file transport
// cannot be abandoned midway (closing the session waits for the
// git-upload-pack process, which blocks writing to a pipe nobody reads any
// more, for ever).
func (r *Repo) bound(ctx context.Context, op string) (context.Context, context.CancelFunc) {
	if r.remote.proto == protoFile {
		return context.WithoutCancel(ctx), func() {}
	}
	return context.WithTimeoutCause(ctx, r.opts.Timeout, &TimeoutError{Op: op, Remote: r.remote.display, After: r.opts.Timeout})
}

// timedOut returns, for an exchange op whose context ended on a deadline,
// the cause of that deadline (which names the exchange or the enclosing
// sync) instead of what the transport made of it; for a timeout of the
// network's own (an SSH dial bounded by sshAuth), a *TimeoutError; else err.
func (r *Repo) timedOut(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return context.Cause(ctx)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &TimeoutError{Op: op, Remote: r.remote.display, After: r.opts.Timeout}
	}
	return err
}

// errf wraps err as an *Error of step op, scrubbed of secrets.
func (r *Repo) errf(op, branch string, err error, secrets ...string) error {
	return &Error{Op: op, Remote: r.remote.display, Branch: branch, Err: classify(err, secrets)}
}

// recoverLocked replaces a broken work directory by a fresh clone.
func (r *Repo) recoverLocked(ctx context.Context, reason error) error {
	r.log.Warn("Work directory is broken, re-cloning", "dir", r.dir, "reason", reason.Error())
	if r.st != nil {
		_ = r.st.Close()
		r.st = nil
	}
	// lastHead, lastDesired and the creation times name commits by hash;
	// they stay valid in the new clone. Cached objects may have been read
	// from the damaged packs: they are not kept.
	r.objects = cache.NewObjectLRU(objectCache)
	r.broken = nil
	return r.cloneLocked(ctx)
}

// cloneLocked clones the tracked branch into a temporary directory and
// moves it into place, so a failed clone never leaves a half-made work
// directory where the next Open would look.
func (r *Repo) cloneLocked(ctx context.Context) error {
	tmp := r.dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return r.errf("clone", r.opts.Branch, err)
	}
	_, err := gogit.PlainInitWithOptions(tmp, &gogit.PlainInitOptions{
		Bare:        true,
		InitOptions: gogit.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName(r.opts.Branch)},
	})
	if err != nil {
		return r.errf("clone", r.opts.Branch, err)
	}
	st := r.openStorage(tmp)
	cfg, err := st.Config()
	if err == nil {
		// The URL is stored without credentials; it is only compared at
		// Open to notice a changed remote.
		cfg.Remotes[remoteName] = &config.RemoteConfig{
			Name:  remoteName,
			URLs:  []string{r.remote.display},
			Fetch: []config.RefSpec{config.RefSpec("+refs/heads/*:refs/remotes/origin/*")},
		}
		err = st.SetConfig(cfg)
	}
	if err != nil {
		_ = st.Close()
		return r.errf("clone", r.opts.Branch, err)
	}
	r.st = st
	heads, _, err := r.fetchLocked(ctx, "clone", r.opts.Branch)
	if err == nil && heads[r.opts.Branch].IsZero() {
		err = r.errf("clone", r.opts.Branch, ErrBranchNotFound)
	}
	_ = st.Close()
	r.st = nil
	if err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.RemoveAll(r.dir); err != nil {
		return r.errf("clone", r.opts.Branch, err)
	}
	if err := os.Rename(tmp, r.dir); err != nil {
		return r.errf("clone", r.opts.Branch, err)
	}
	r.st = r.openStorage(r.dir)
	r.log.Info("Cloned fleet repo", "dir", r.dir, "commit", heads[r.opts.Branch].String())
	return nil
}

// usable re-clones a work directory found broken earlier. It is called at
// the start of each Fetch.
func (r *Repo) usable(ctx context.Context) error {
	if r.closed {
		return errors.New("git: repo is closed")
	}
	if r.broken != nil {
		return r.recoverLocked(ctx, r.broken)
	}
	return nil
}

// noteCorrupt remembers that the work directory is broken when err says a
// local object that must exist is missing or unreadable.
func (r *Repo) noteCorrupt(err error) {
	if err != nil && isCorrupt(err) && r.broken == nil {
		r.broken = err
		r.log.Warn("Work directory is corrupt, re-cloning at the next fetch", "dir", r.dir, "reason", err.Error())
	}
}

// trackingRef is where the remote's branch is kept in the clone.
func trackingRef(branch string) plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName(remoteName, branch)
}

func (r *Repo) localHead(branch string) plumbing.Hash {
	ref, err := r.st.Reference(trackingRef(branch))
	if err != nil {
		return plumbing.ZeroHash
	}
	return ref.Hash()
}
