package git

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage"
	gossh "golang.org/x/crypto/ssh"
)

// DefaultHTTPUser is the basic-auth user sent with a token when Auth.Username
// is empty. GitLab and GitHub accept any non-empty user with an access token.
const DefaultHTTPUser = "fleetd"

// DefaultTimeout bounds each exchange with the remote (a fetch, a push, a
// clone) when Options.Timeout is zero.
const DefaultTimeout = time.Minute

// Auth says where the credentials for the remote are. Secrets are read from
// files at every connection, so a rotated token or key is picked up without
// a restart, and they never appear in errors or logs.
type Auth struct {
	// Username is the HTTP basic-auth user sent with the token
	// (DefaultHTTPUser when empty; "oauth2" for GitLab OAuth tokens).
	Username string
	// TokenFile holds the HTTPS token (surrounding white space is ignored).
	TokenFile string

	// SSHKeyFile holds the private key for ssh:// and user@host:path remotes.
	SSHKeyFile string
	// SSHKeyPassphraseFile holds the key's passphrase, if it has one.
	SSHKeyPassphraseFile string
	// KnownHostsFile lists the accepted host keys. When empty, the
	// SSH_KNOWN_HOSTS environment variable, ~/.ssh/known_hosts and
	// /etc/ssh/ssh_known_hosts are used.
	KnownHostsFile string
	// InsecureIgnoreHostKey accepts any SSH host key. It is an explicit
	// opt-in and is logged as a warning.
	InsecureIgnoreHostKey bool
}

type protocol int

const (
	protoFile protocol = iota
	protoHTTP
	protoSSH
)

// remote is the fleet repo's remote: its endpoint and how to authenticate.
type remote struct {
	display string // URL without userinfo, for errors and logs
	proto   protocol
	ep      *transport.Endpoint
	tr      transport.Transport
	auth    Auth
	timeout time.Duration
	log     *slog.Logger

	// The parsed SSH key and a digest of the file and passphrase it came
	// from. Guarded by the Repo's lock, like every use of remote.
	signer    gossh.Signer
	signerSum [32]byte
}

func newRemote(raw string, auth Auth, timeout time.Duration, log *slog.Logger) (*remote, error) {
	if raw == "" {
		return nil, errors.New("remote URL is empty")
	}
	display := redactURL(raw)
	ep, err := transport.NewEndpoint(raw)
	if err != nil {
		return nil, fmt.Errorf("parse remote %s: %w", display, errors.New("invalid URL"))
	}
	rm := &remote{display: display, ep: ep, auth: auth, timeout: timeout, log: log}
	switch ep.Protocol {
	case "file":
		rm.proto = protoFile
	case "http", "https":
		rm.proto = protoHTTP
		if auth.TokenFile != "" {
			// The token replaces whatever the URL carried.
			ep.User, ep.Password = "", ""
		}
	case "ssh":
		rm.proto = protoSSH
		if auth.SSHKeyFile == "" {
			return nil, fmt.Errorf("remote %s: an SSH remote needs a private key file", display)
		}
		if auth.InsecureIgnoreHostKey {
			log.Warn("SSH host key verification disabled by configuration", "remote", display)
		}
	default:
		return nil, fmt.Errorf("remote %s: unsupported protocol %q (use https, ssh or file)", display, ep.Protocol)
	}
	rm.tr, err = client.NewClient(ep)
	if err != nil {
		return nil, fmt.Errorf("remote %s: %w", display, err)
	}
	return rm, nil
}

// authMethod builds the credentials for one exchange, bounded by ctx, and
// returns the secrets it read, so errors can be scrubbed of them.
func (rm *remote) authMethod(ctx context.Context) (transport.AuthMethod, []string, error) {
	switch rm.proto {
	case protoHTTP:
		secrets := []string{rm.ep.Password}
		if rm.auth.TokenFile == "" {
			return nil, secrets, nil
		}
		tok, err := readSecret(rm.auth.TokenFile)
		if err != nil {
			return nil, secrets, fmt.Errorf("read token file %s: %w", rm.auth.TokenFile, err)
		}
		user := rm.auth.Username
		if user == "" {
			user = DefaultHTTPUser
		}
		return &githttp.BasicAuth{Username: user, Password: tok}, append(secrets, tok), nil
	case protoSSH:
		var pass string
		if rm.auth.SSHKeyPassphraseFile != "" {
			p, err := readSecret(rm.auth.SSHKeyPassphraseFile)
			if err != nil {
				return nil, nil, fmt.Errorf("read SSH key passphrase file %s: %w", rm.auth.SSHKeyPassphraseFile, err)
			}
			pass = p
		}
		user := rm.ep.User
		if user == "" {
			user = "git"
		}
		signer, err := rm.sshSigner(pass)
		if err != nil {
			return nil, []string{pass}, fmt.Errorf("read SSH key file %s: %w", rm.auth.SSHKeyFile, err)
		}
		keys := &gitssh.PublicKeys{User: user, Signer: signer}
		if rm.auth.InsecureIgnoreHostKey {
			keys.HostKeyCallback = gossh.InsecureIgnoreHostKey() //nolint:gosec // explicit, logged opt-in
		} else {
			var files []string
			if rm.auth.KnownHostsFile != "" {
				files = []string{rm.auth.KnownHostsFile}
			}
			db, err := gitssh.NewKnownHostsDb(files...)
			if err != nil {
				return nil, []string{pass}, fmt.Errorf("read known_hosts: %w", err)
			}
			port := rm.ep.Port
			if port <= 0 {
				port = gitssh.DefaultPort
			}
			keys.HostKeyCallback = db.HostKeyCallback()
			// Offer only the algorithms known_hosts has a key for, or the
			// server may present a key of another type and fail the check.
			keys.HostKeyAlgorithms = db.HostKeyAlgorithms(net.JoinHostPort(rm.ep.Host, strconv.Itoa(port)))
		}
		return &sshAuth{PublicKeys: keys, timeout: rm.timeout, ctx: ctx}, []string{pass}, nil
	}
	return nil, nil, nil
}

// fetch runs go-git's fetch of branches into their tracking references in
// st. Tags are not fetched: fleetd reads branches only.
func (rm *remote) fetch(ctx context.Context, st storage.Storer, auth transport.AuthMethod, branches []string) error {
	specs := make([]config.RefSpec, len(branches))
	for i, b := range branches {
		specs[i] = config.RefSpec("+" + plumbing.NewBranchReferenceName(b).String() + ":" + trackingRef(b).String())
	}
	rem := gogit.NewRemote(st, &config.RemoteConfig{Name: remoteName, URLs: []string{rm.ep.String()}})
	return rem.FetchContext(ctx, &gogit.FetchOptions{RemoteName: remoteName, RefSpecs: specs, Auth: auth, Tags: gogit.NoTags})
}

func (rm *remote) receivePack(ctx context.Context) (transport.ReceivePackSession, []string, error) {
	auth, secrets, err := rm.authMethod(ctx)
	if err != nil {
		return nil, secrets, err
	}
	// An SSH session's opening is bounded by boundedSSH; an HTTP session
	// connects in its first request, which carries ctx.
	s, err := rm.tr.NewReceivePackSession(rm.ep, auth)
	return s, secrets, err
}

// openSession opens a session, giving up when ctx ends. Opening an SSH
// session connects and runs the SSH handshake, which go-git does without a
// context and without a deadline (ssh.ClientConfig.Timeout bounds the TCP
// dial only): a server that accepts and never answers would hold the caller
// for ever. The opening goes on in the background then, and a session that
// opens after all is closed at once.
func openSession[S io.Closer](ctx context.Context, open func() (S, error)) (S, error) {
	type opened struct {
		s   S
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := open()
		ch <- opened{s, err}
	}()
	select {
	case o := <-ch:
		return o.s, o.err
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.err == nil {
				_ = o.s.Close()
			}
		}()
		var zero S
		return zero, ctx.Err()
	}
}

// sshSigner parses the private key file, reusing the last parsed key while
// the file and passphrase are unchanged: decrypting a passphrase-protected
// OpenSSH key costs a bcrypt derivation, too much for every poll.
func (rm *remote) sshSigner(pass string) (gossh.Signer, error) {
	pemBytes, err := os.ReadFile(rm.auth.SSHKeyFile)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append(append([]byte(pass), 0), pemBytes...))
	if rm.signer != nil && rm.signerSum == sum {
		return rm.signer, nil
	}
	var signer gossh.Signer
	if pass != "" {
		signer, err = gossh.ParsePrivateKeyWithPassphrase(pemBytes, []byte(pass))
	} else {
		signer, err = gossh.ParsePrivateKey(pemBytes)
	}
	if err != nil {
		return nil, err
	}
	rm.signer, rm.signerSum = signer, sum
	return signer, nil
}

// sshAuth is go-git's public-key auth with a bounded dial, made for one
// exchange. It carries the exchange's context because go-git's SSH
// transport connects without one (see boundedSSH), and the auth method is
// the one value of fleetd's that reaches the connection.
type sshAuth struct {
	*gitssh.PublicKeys
	timeout time.Duration
	ctx     context.Context //nolint:containedctx // see above
}

func init() {
	client.InstallProtocol("ssh", boundedSSH{gitssh.DefaultClient})
}

// boundedSSH is go-git's SSH transport with the session's opening bounded
// by the exchange's context, for fleetd's own exchanges (those authenticated
// by an *sshAuth); any other use of go-git in the process is passed through
// unchanged. Opening a session connects and runs the SSH handshake, which
// go-git does without a context, so a server that accepts and never answers
// would hold Remote.FetchContext for ever.
type boundedSSH struct{ transport.Transport }

func (t boundedSSH) NewUploadPackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.UploadPackSession, error) {
	a, ok := auth.(*sshAuth)
	if !ok {
		return t.Transport.NewUploadPackSession(ep, auth)
	}
	return openSession(a.ctx, func() (transport.UploadPackSession, error) { return t.Transport.NewUploadPackSession(ep, auth) })
}

func (t boundedSSH) NewReceivePackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.ReceivePackSession, error) {
	a, ok := auth.(*sshAuth)
	if !ok {
		return t.Transport.NewReceivePackSession(ep, auth)
	}
	return openSession(a.ctx, func() (transport.ReceivePackSession, error) { return t.Transport.NewReceivePackSession(ep, auth) })
}

func (a *sshAuth) ClientConfig() (*gossh.ClientConfig, error) {
	cfg, err := a.PublicKeys.ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.Timeout = a.timeout
	return cfg, nil
}

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", errors.New("file is empty")
	}
	return s, nil
}

// redactURL returns the remote without userinfo: for URLs
// (https://user:token@host/x → https://host/x) and for scp-like remotes
// (git@host:path → host:path).
func redactURL(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
			rest = rest[at+1:]
		}
		return raw[:i+3] + rest
	}
	if at := strings.Index(raw, "@"); at >= 0 {
		colon := strings.Index(raw, ":")
		slash := strings.Index(raw, "/")
		if colon > at && (slash < 0 || slash > colon) {
			return raw[at+1:]
		}
	}
	return raw
}
