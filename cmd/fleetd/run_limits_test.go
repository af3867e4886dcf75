package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

// TestRunReadyWithAnInvalidFleetYAML runs `fleetd run` with its real sync
// loop on a fleet repo whose fleet.yaml is invalid. Every fetch succeeds, so
// the daemon is ready (it must stay in its Service: the webhook of the
// fixing commit has to reach it), and /readyz names the load error. It was
// 503 with "last successful fetch 19s ago".
func TestRunReadyWithAnInvalidFleetYAML(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fleet.yaml"), []byte("apiVersion: fleetd.io/v1alpha1\nkind: Fleet\nname: acme\nproviders: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRepo(t, dir)
	addrc := make(chan net.Addr, 1)
	wr := liveWiring()
	wr.onListen = func(a net.Addr) { addrc <- a }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &logbuf.Buffer{}
	code := make(chan int, 1)
	go func() {
		code <- runWith(ctx, wr, []string{"run", "--repo", dir, "--branch", "main", "--listen", "127.0.0.1:0",
			"--poll-interval", "1s", "--work-dir", t.TempDir()}, io.Discard, logs)
	}()
	var addr string
	select {
	case a := <-addrc:
		addr = a.String()
	case c := <-code:
		t.Fatalf("fleetd run exited %d: %s", c, logs)
	case <-time.After(30 * time.Second):
		t.Fatal("fleetd run did not listen")
	}
	waitFor(t, "a sync that fetched", func() bool { return strings.Contains(logs.String(), "Sync ended") })
	// Past 3 poll intervals too: every fetch succeeds.
	time.Sleep(3500 * time.Millisecond)
	c, body := get(t, "http://"+addr+"/readyz")
	if c != 200 || !strings.Contains(body, "does not load") || !strings.Contains(body, "fleet.yaml") {
		t.Errorf("/readyz %d %q; want 200 naming the invalid fleet.yaml", c, body)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("exit %d; log:\n%s", c, logs)
	}
}

// TestRunLocksTheWorkDir starts a second `fleetd run` on the work directory
// of a running one: it exits at once, naming the directory and the pid of
// the one that holds it. Two daemons on one clone failed each other's reads
// ("packfile not found").
func TestRunLocksTheWorkDir(t *testing.T) {
	work := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fake := &fakeSyncer{started: make(chan int32, 10)}
	_, wait, logs := startRun(t, ctx, fake, "--repo", "/srv/fleet.git", "--listen", "127.0.0.1:0", "--work-dir", work)
	waitFor(t, "the first sync", func() bool { return fake.calls.Load() >= 1 })

	stderr := &logbuf.Buffer{}
	second := make(chan int, 1)
	go func() {
		second <- Run(context.Background(), []string{"run", "--repo", "/srv/fleet.git", "--listen", "127.0.0.1:0", "--work-dir", work}, io.Discard, stderr)
	}()
	select {
	case c := <-second:
		msg := stderr.String()
		if c == 0 || !strings.Contains(msg, work) || !strings.Contains(msg, "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(msg, "in use") {
			t.Errorf("second daemon: exit %d, stderr %q; want non-zero naming %s and pid %d", c, msg, work, os.Getpid())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second daemon on the same work dir did not exit")
	}
	if n := fake.calls.Load(); n != 1 {
		t.Errorf("%d syncs: the second daemon synced", n)
	}

	cancel()
	if c := wait(); c != 0 {
		t.Errorf("first daemon exit %d:\n%s", c, logs)
	}
	// The lock goes with the daemon.
	unlock, err := lockWorkDir(work)
	if err != nil {
		t.Fatalf("the work dir is still locked after the daemon stopped: %v", err)
	}
	unlock()
}
