package git

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

// sshGit is an SSH server on 127.0.0.1 that runs git-upload-pack and
// git-receive-pack on the repositories under root for authorized keys.
type sshGit struct {
	addr    string
	hostKey ssh.Signer
	root    string

	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newSigner(t *testing.T) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

func startSSHGit(t *testing.T, root string, authorized ssh.PublicKey) *sshGit {
	t.Helper()
	hostKey, _ := newSigner(t)
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), authorized.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	cfg.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sshGit{addr: ln.Addr().String(), hostKey: hostKey, root: root, ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c, cfg)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *sshGit) serve(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.session(ch, creqs)
		}()
	}
}

// session runs the one git command an exec request asks for.
func (s *sshGit) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			_ = req.Reply(false, nil)
			continue
		}
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			_ = req.Reply(false, nil)
			return
		}
		verb, arg, _ := strings.Cut(p.Command, " ")
		if verb != "git-upload-pack" && verb != "git-receive-pack" {
			_ = req.Reply(false, nil)
			return
		}
		repo := filepath.Join(s.root, filepath.Clean("/"+strings.Trim(arg, "'")))
		_ = req.Reply(true, nil)
		go ssh.DiscardRequests(reqs)

		cmd := exec.Command(verb, repo)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return
		}
		cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
		status := uint32(0)
		if err := cmd.Start(); err != nil {
			status = 127
		} else {
			go func() {
				_, _ = io.Copy(stdin, ch)
				stdin.Close()
			}()
			if err := cmd.Wait(); err != nil {
				status = 1
			}
		}
		_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

func TestSSH(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clientKey, clientPriv := newSigner(t)
	srv := startSSHGit(t, filepath.Dir(f.bare), clientKey.PublicKey())
	url := fmt.Sprintf("ssh://git@%s/fleet.git", srv.addr)
	display := fmt.Sprintf("ssh://%s/fleet.git", srv.addr)

	dir := t.TempDir()
	block0, err := ssh.MarshalPrivateKey(clientPriv, "fleetd")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writeFile(t, dir, "id_ed25519", string(pem.EncodeToMemory(block0)))
	otherKey, otherPriv := newSigner(t)
	block, _ := ssh.MarshalPrivateKey(otherPriv, "")
	strangerKey := writeFile(t, dir, "id_stranger", string(pem.EncodeToMemory(block)))
	hostLine := knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, srv.hostKey.PublicKey())
	knownHosts := writeFile(t, dir, "known_hosts", hostLine+"\n")
	otherHost := writeFile(t, dir, "known_hosts_other", knownhosts.Line([]string{"[127.0.0.1]:1"}, srv.hostKey.PublicKey())+"\n")
	changedKey := writeFile(t, dir, "known_hosts_changed", knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, otherKey.PublicKey())+"\n")
	ctx := context.Background()

	t.Run("clone, fetch and push with a key", func(t *testing.T) {
		r, _ := open(t, url, Options{Auth: Auth{SSHKeyFile: keyFile, KnownHostsFile: knownHosts}})
		head := f.commit("add qa", map[string]string{"clusters/qa/ssh.yaml": "name: ssh\n"})
		res := mustFetch(t, r)
		if res.Head != head || !res.Downloaded {
			t.Fatalf("Fetch = %+v, want %s downloaded", res, head)
		}
		st, err := r.WriteStatus(ctx, files("qa/ssh.yaml", "phase: Ready\n"), Message{Subject: "status: qa/ssh Ready"})
		if err != nil || f.head(DefaultStatusBranch) != st.Commit {
			t.Fatalf("WriteStatus = %+v, %v", st, err)
		}
	})
	t.Run("passphrase-protected key needs its passphrase", func(t *testing.T) {
		pass := writeFile(t, dir, "passphrase", "fleetd\n")
		locked := writeFile(t, dir, "id_locked", string(pem.EncodeToMemory(block0)))
		// ssh-keygen can encrypt with one KDF round, which keeps the test
		// fast under -race; x/crypto always uses 16.
		if _, err := exec.LookPath("ssh-keygen"); err == nil {
			if out, err := exec.Command("ssh-keygen", "-q", "-p", "-a", "1", "-P", "", "-N", "fleetd", "-f", locked).CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen: %v: %s", err, out)
			}
		} else {
			block, _ := ssh.MarshalPrivateKeyWithPassphrase(clientPriv, "", []byte("fleetd"))
			writeFile(t, dir, "id_locked", string(pem.EncodeToMemory(block)))
		}
		open(t, url, Options{Auth: Auth{SSHKeyFile: locked, SSHKeyPassphraseFile: pass, KnownHostsFile: knownHosts}})
		_, err := Open(ctx, Options{URL: url, Auth: Auth{SSHKeyFile: locked, KnownHostsFile: knownHosts}, Dir: t.TempDir(), Logger: testLogger(&logbuf.Buffer{})})
		if err == nil || !strings.Contains(err.Error(), "read SSH key file") {
			t.Fatalf("Open without the passphrase: %v", err)
		}
	})

	failures := []struct {
		name    string
		auth    Auth
		wantErr error
		want    string
	}{
		{"host key not in known_hosts is refused", Auth{SSHKeyFile: keyFile, KnownHostsFile: otherHost}, ErrHostKey, "host key not in known_hosts"},
		{"changed host key is refused", Auth{SSHKeyFile: keyFile, KnownHostsFile: changedKey}, ErrHostKey, "host key does not match known_hosts"},
		{"unauthorized client key is refused", Auth{SSHKeyFile: strangerKey, KnownHostsFile: knownHosts}, ErrAuth, "unable to authenticate"},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(ctx, Options{URL: url, Auth: tt.auth, Dir: t.TempDir(), Logger: testLogger(&logbuf.Buffer{})})
			if !errors.Is(err, tt.wantErr) || !strings.HasPrefix(err.Error(), "git: clone "+display+" branch main: ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open error = %v, want %v mentioning %q", err, tt.wantErr, tt.want)
			}
			t.Log(err)
		})
	}
	t.Run("skipping host key verification is an explicit, logged opt-in", func(t *testing.T) {
		empty := writeFile(t, dir, "known_hosts_empty", "")
		_, logs := open(t, url, Options{Auth: Auth{SSHKeyFile: keyFile, KnownHostsFile: empty, InsecureIgnoreHostKey: true}})
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "host key verification disabled") {
			t.Fatalf("no warning logged:\n%s", logs)
		}
	})
	t.Run("an SSH remote needs a key file", func(t *testing.T) {
		_, err := Open(ctx, Options{URL: url, Dir: t.TempDir(), Logger: testLogger(&logbuf.Buffer{})})
		if err == nil || !strings.Contains(err.Error(), "private key file") {
			t.Fatalf("Open error = %v", err)
		}
	})
}
