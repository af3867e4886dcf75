package git

import (
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ErrRevisionNotFound says a revision does not name a commit of the clone.
var ErrRevisionNotFound = errors.New("revision not found")

// maxLocalFile bounds each file ReadLocalFiles returns; status files are
// small and the tree is untrusted.
const maxLocalFile = 1 << 20

// ReadLocalFiles reads the regular files below prefix of revision rev (such
// as origin/fleet-status) in the git clone that contains dir, without a
// checkout. prefix is relative to dir, so dir may be a folder inside the
// clone. The result is keyed by slash-separated paths relative to dir.
// Symbolic links and files over 1 MiB are errors; nothing is followed. It
// returns ErrRevisionNotFound (wrapped) when rev names nothing, and
// gogit.ErrRepositoryNotExists when dir is in no clone. It changes nothing.
func ReadLocalFiles(dir, rev, prefix string) (map[string][]byte, error) {
	repo, err := gogit.PlainOpenWithOptions(dir, &gogit.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, err
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("git: %s: %w", dir, err)
	}
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(wt.Filesystem.Root(), absDir)
	if err != nil || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("git: %s is outside its clone %s", dir, wt.Filesystem.Root())
	}
	base := path.Clean(path.Join(filepath.ToSlash(rel), prefix))

	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, fmt.Errorf("git: %s: %q: %w", dir, rev, ErrRevisionNotFound)
	}
	commit, err := repo.CommitObject(*h)
	if err != nil {
		return nil, fmt.Errorf("git: %s: read commit %s: %w", dir, h, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("git: %s: read tree of %s: %w", dir, h, err)
	}
	if base != "." {
		sub, err := tree.Tree(base)
		if errors.Is(err, object.ErrDirectoryNotFound) {
			return map[string][]byte{}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("git: %s: %s at %s: %w", dir, base, rev, err)
		}
		tree = sub
	}
	out := map[string][]byte{}
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, entry, err := walker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("git: %s: walk %s at %s: %w", dir, base, rev, err)
		}
		p := path.Join(prefix, name)
		switch entry.Mode {
		case filemode.Dir:
			continue
		case filemode.Regular, filemode.Executable:
		case filemode.Symlink:
			return nil, fmt.Errorf("git: %s at %s: %w", p, rev, ErrSymlink)
		default:
			return nil, fmt.Errorf("git: %s at %s: not a regular file", p, rev)
		}
		blob, err := repo.BlobObject(entry.Hash)
		if err != nil {
			return nil, fmt.Errorf("git: %s at %s: %w", p, rev, err)
		}
		if blob.Size > maxLocalFile {
			return nil, fmt.Errorf("git: %s at %s: %d bytes, more than 1 MiB", p, rev, blob.Size)
		}
		r, err := blob.Reader()
		if err != nil {
			return nil, fmt.Errorf("git: %s at %s: %w", p, rev, err)
		}
		data, err := io.ReadAll(io.LimitReader(r, maxLocalFile+1))
		_ = r.Close()
		if err != nil {
			return nil, fmt.Errorf("git: %s at %s: %w", p, rev, err)
		}
		out[p] = data
	}
	return out, nil
}

// LocalHead returns the commit checked out in the git clone that contains
// dir, or "" when dir is in no clone or the clone has no commit yet. It reads
// through go-git, so a crafted HEAD cannot make it read outside the clone.
func LocalHead(dir string) string {
	repo, err := gogit.PlainOpenWithOptions(dir, &gogit.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return ""
	}
	head, err := repo.Head()
	if err != nil {
		return ""
	}
	return head.Hash().String()
}
