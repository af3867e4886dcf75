package git

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Kinds of errors callers classify with errors.Is.
var (
	// ErrAuth means the remote refused the credentials, or needs some.
	ErrAuth = errors.New("authentication failed")
	// ErrHostKey means the SSH server's host key is not in known_hosts or
	// does not match it.
	ErrHostKey = errors.New("host key verification failed")
	// ErrBranchNotFound means the tracked branch does not exist on the remote.
	ErrBranchNotFound = errors.New("branch not found")
	// ErrRepositoryNotFound means the remote has no such repository.
	ErrRepositoryNotFound = errors.New("repository not found")
	// ErrConflict means a status push was rejected by concurrent pushes on
	// every try; the caller retries at its next sync.
	ErrConflict = errors.New("push rejected by concurrent updates on every try")
	// ErrSymlink is returned when a tree's symbolic link would have to be
	// followed; symlinks are never followed.
	ErrSymlink = errors.New("symbolic link not followed")
)

// TimeoutError says the remote did not answer an exchange in time. It
// unwraps to context.DeadlineExceeded.
type TimeoutError struct {
	Op     string // the exchange: "fetch", "push", "clone"
	Remote string // remote URL without userinfo
	After  time.Duration
}

func (e *TimeoutError) Error() string {
	// The *Error around it names the exchange and the remote.
	return fmt.Sprintf("no answer within %s", e.After)
}

func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// Error is the failure of one step against the fleet repo: the step (clone,
// fetch, push, …), the remote without credentials, the branch, and the cause.
type Error struct {
	Op     string // step that failed: "open", "clone", "fetch", "push", "read"
	Remote string // remote URL without userinfo
	Branch string // branch involved, if any
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("git: ")
	b.WriteString(e.Op)
	if e.Remote != "" {
		b.WriteByte(' ')
		b.WriteString(e.Remote)
	}
	if e.Branch != "" {
		b.WriteString(" branch ")
		b.WriteString(e.Branch)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// kindError attaches one of the package's kinds to a cause without changing
// its message.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// classify attaches a kind to well-known transport failures and removes
// every secret from the message. A message that contained a secret loses its
// chain (only the redacted text and the kind are kept), so no caller can
// reach the secret through errors.Unwrap either.
func classify(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	var kind error
	var keyErr *knownhosts.KeyError
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired),
		errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrInvalidAuthMethod):
		kind = ErrAuth
	case errors.As(err, &keyErr):
		kind = ErrHostKey
	case errors.Is(err, transport.ErrRepositoryNotFound):
		kind = ErrRepositoryNotFound
	case strings.Contains(err.Error(), "unable to authenticate"):
		kind = ErrAuth
	}
	msg := err.Error()
	redacted := redact(msg, secrets)
	if redacted != msg {
		err = errors.New(redacted)
	}
	if keyErr != nil {
		if len(keyErr.Want) == 0 {
			err = errors.New(redacted + " (host key not in known_hosts)")
		} else {
			err = errors.New(redacted + " (host key does not match known_hosts)")
		}
	}
	if kind == nil {
		return err
	}
	return &kindError{kind: kind, err: err}
}

// redact replaces every occurrence of a secret in s.
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec == "" {
			continue
		}
		s = strings.ReplaceAll(s, sec, "REDACTED")
	}
	return s
}
