package fleetsync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// RepoSource follows a remote fleet repo from a clone kept in a work
// directory (the daemon, the demo, `fleetd apply` on a clone): it fetches
// incrementally, reads trees and history from the clone, and commits status
// to the status branch that fleet.yaml names, pushing without force.
type RepoSource struct {
	// Options open the clone; StatusBranch and Author are taken from
	// fleet.yaml, and the clone is reopened when they change.
	Options fgit.Options

	mu   sync.Mutex
	repo *fgit.Repo
	last string // the previous snapshot's revision
	// refused is the remote's refusal of the credentials, and refusedSum
	// the digest of the credential files it refused: while they are
	// unchanged, the remote is not asked again.
	refused    error
	refusedSum string
	// status is what the status branch holds as far as this source knows:
	// fleetd is the branch's only writer, and its pushes are compare-and-
	// swap, so after the first read each sync needs no fetch of the branch
	// (a concurrent writer makes the next push fetch and retry).
	status *RecordedStatus
	// statusHead is the status branch's commit that status was read from
	// or written as ("" when the branch did not exist). A fetch that lists
	// another head (someone deleted, reset or edited the branch) drops the
	// cached status, so the next sync reads it and writes it back.
	statusHead string
}

// Close releases the clone.
func (s *RepoSource) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repo == nil {
		return nil
	}
	err := s.repo.Close()
	s.repo = nil
	return err
}

// open returns the clone opened for fleet's status branch and author.
func (s *RepoSource) open(ctx context.Context, fleet *schema.Fleet) (*fgit.Repo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := s.Options
	if fleet != nil {
		want.StatusBranch = fleet.StatusBranch()
		want.Author = author(fleet)
	} else if s.repo != nil {
		return s.repo, nil
	}
	if s.repo != nil && want.StatusBranch == s.Options.StatusBranch && want.Author == s.Options.Author {
		return s.repo, nil
	}
	if s.repo != nil {
		_ = s.repo.Close()
		s.repo = nil
	}
	repo, err := fgit.Open(ctx, want)
	if err != nil {
		return nil, err
	}
	s.Options, s.repo, s.status = want, repo, nil
	return repo, nil
}

// Snapshot fetches the tracked branch. After the remote refused the
// credentials, it fails with that refusal without asking the remote again
// until the token or key files change.
func (s *RepoSource) Snapshot(ctx context.Context) (*Snapshot, error) {
	sum := s.credentialsSum()
	s.mu.Lock()
	refused := s.refused
	if refused != nil && s.refusedSum != sum {
		refused, s.refused = nil, nil
	}
	s.mu.Unlock()
	if refused != nil {
		return nil, refused
	}
	repo, err := s.open(ctx, nil)
	if err != nil {
		return nil, s.noteRefusal(err, sum)
	}
	start := time.Now()
	fr, err := repo.Fetch(ctx)
	if err != nil {
		return nil, s.noteRefusal(err, sum)
	}
	tree, err := repo.FS(ctx, fr.Head)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	changed := fr.Desired != s.last
	s.last = fr.Desired
	branch := s.Options.Branch
	moved := ""
	if fr.StatusListed && s.status != nil && fr.StatusHead != s.statusHead {
		moved = fmt.Sprintf("the status branch %s is at %s, not at %s as fleetd wrote it: it is read again and rewritten",
			s.Options.StatusBranch, cmp.Or(short(fr.StatusHead), "(deleted)"), cmp.Or(short(s.statusHead), "(none)"))
		s.status = nil
	}
	s.mu.Unlock()
	if branch == "" {
		branch = fgit.DefaultBranch
	}
	return &Snapshot{
		Revision: fr.Desired, Head: fr.Head, Changed: changed, FS: tree,
		History: s, HistoryCommit: fr.Head,
		Describe:      fmt.Sprintf("commit %s of %s", short(fr.Desired), branch),
		FetchDuration: time.Since(start),
		Rewritten:     fr.Rewritten,
		StatusMoved:   moved,
	}, nil
}

// noteRefusal remembers a refusal of the credentials (fgit.ErrAuth) and
// says what to fix.
func (s *RepoSource) noteRefusal(err error, sum string) error {
	if !errors.Is(err, fgit.ErrAuth) {
		return err
	}
	a := s.Options.Auth
	source := ""
	switch {
	case a.TokenFile != "":
		source = "file:" + a.TokenFile
	case a.SSHKeyFile != "":
		source = "file:" + a.SSHKeyFile
	}
	err = &reconcile.CredentialsError{Peer: "The fleet repo's remote", Source: source, Err: err}
	s.mu.Lock()
	s.refused, s.refusedSum = err, sum
	s.mu.Unlock()
	return err
}

// credentialsSum digests the files the remote's credentials are read from.
func (s *RepoSource) credentialsSum() string {
	a := s.Options.Auth
	return strings.Join(credentialDigests([]string{"file:" + a.TokenFile, "file:" + a.SSHKeyFile, "file:" + a.SSHKeyPassphraseFile}), ",")
}

// ReadStatus fetches the status branch and reads status/ from it.
func (s *RepoSource) ReadStatus(ctx context.Context, fleet *schema.Fleet) (RecordedStatus, error) {
	repo, err := s.open(ctx, fleet)
	if err != nil {
		return RecordedStatus{}, err
	}
	s.mu.Lock()
	cached := s.status
	s.mu.Unlock()
	if cached != nil {
		return *cached, nil
	}
	files, head, err := repo.ReadStatus(ctx)
	if err != nil {
		return RecordedStatus{}, err
	}
	rs := RecordedStatus{Files: files}
	if head != "" {
		rs.From = fmt.Sprintf("%s @ %s", fleet.StatusBranch(), short(head))
	} else {
		rs.Warning = fmt.Sprintf("no recorded status: branch %s does not exist yet", fleet.StatusBranch())
	}
	s.mu.Lock()
	s.status, s.statusHead = &rs, head
	s.mu.Unlock()
	return rs, nil
}

// WriteStatus commits files to the status branch and pushes them.
func (s *RepoSource) WriteStatus(ctx context.Context, fleet *schema.Fleet, files map[string][]byte, msg fgit.Message) (string, bool, error) {
	repo, err := s.open(ctx, fleet)
	if err != nil {
		return "", false, err
	}
	res, err := repo.WriteStatus(ctx, files, msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// What the branch holds is unknown now: read it again next time.
		s.status = nil
		return "", false, err
	}
	s.status = &RecordedStatus{Files: files, From: fmt.Sprintf("%s @ %s", fleet.StatusBranch(), short(res.Commit))}
	s.statusHead = res.Commit
	return res.Commit, res.Committed, nil
}

// History walks the kept clone's history (see git.Repo.History). It reads
// the clone open now, so it stays valid when the clone is reopened for
// another status branch.
func (s *RepoSource) History(ctx context.Context, commit, prefix string) (*fgit.History, error) {
	repo, err := s.open(ctx, nil)
	if err != nil {
		return nil, err
	}
	return repo.History(ctx, commit, prefix)
}

// Blob reads a blob of the kept clone.
func (s *RepoSource) Blob(ctx context.Context, hash string) ([]byte, error) {
	repo, err := s.open(ctx, nil)
	if err != nil {
		return nil, err
	}
	return repo.Blob(ctx, hash)
}
