package git

import (
	"context"
	"encoding/pem"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fleetd/fleetd/internal/testenv/netfault"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

func TestAnExchangeWithAHungRemoteEndsAtItsTimeout(t *testing.T) {
	t.Parallel()
	addr := netfault.HangingPeer(t)
	dir := t.TempDir()
	_, priv := newSigner(t)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writeFile(t, dir, "id_ed25519", string(pem.EncodeToMemory(block)))
	for _, c := range []struct {
		name, url, shown string
		auth             Auth
	}{
		{"https", "http://fleetd:s3cret@" + addr + "/fleet.git", "http://" + addr + "/fleet.git", Auth{}},
		{"ssh", "ssh://git@" + addr + "/fleet.git", "ssh://" + addr + "/fleet.git", Auth{SSHKeyFile: keyFile, InsecureIgnoreHostKey: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := Open(ctx, Options{URL: c.url, Dir: filepath.Join(t.TempDir(), "w"), Auth: c.auth,
				Timeout: 100 * time.Millisecond, Logger: testLogger(&logbuf.Buffer{})})
			var te *TimeoutError
			if !errors.As(err, &te) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Open on a hung remote: %v, want a *TimeoutError", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "clone "+c.shown) || !strings.Contains(msg, "no answer within 100ms") || strings.Contains(msg, "s3cret") {
				t.Fatalf("error %q: want it to name the clone of %s and the timeout, without credentials", msg, c.shown)
			}
			if ctx.Err() != nil {
				t.Fatal("Open returned only when the test's own deadline passed")
			}
		})
	}
}
