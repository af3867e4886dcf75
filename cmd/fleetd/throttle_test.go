package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

// TestRunBacksOffAThrottlingProviderAlone runs `fleetd run` with its real
// sync loop while the EC2 endpoint throttles every call
// (RequestLimitExceeded, as EC2 answers): the vSphere cluster beside it gets
// its machine in the first sync, and EC2 is called again after growing
// delays (the provider's own backoff, 1 s doubling), not at every sync.
// Before, a throttled cluster was retried every 8 s for ever.
func TestRunBacksOffAThrottlingProviderAlone(t *testing.T) {
	ec2, vc, dir := startLiveFleet(t, vcsimserver.Options{})
	ec2.Throttle(1 << 30)
	var (
		mu    sync.Mutex
		calls []time.Time
	)
	ec2.OnCall("DescribeInstances", func(int) {
		mu.Lock()
		calls = append(calls, time.Now())
		mu.Unlock()
	})
	fleetDir := filepath.Join(dir, "fleet")
	gitRepo(t, fleetDir)
	vim, err := vc.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	addrc := make(chan net.Addr, 1)
	wr := liveWiring()
	wr.onListen = func(a net.Addr) { addrc <- a }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &logbuf.Buffer{}
	code := make(chan int, 1)
	start := time.Now()
	go func() {
		code <- runWith(ctx, wr, []string{"run", "--repo", fleetDir, "--branch", "main", "--work-dir", filepath.Join(dir, "work"),
			"--listen", "127.0.0.1:0", "--poll-interval", "1h", "--resync-interval", "1s"}, io.Discard, logs)
	}()
	select {
	case <-addrc:
	case c := <-code:
		t.Fatalf("fleetd run exited %d:\n%s", c, logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("fleetd run did not start")
	}

	// The healthy cluster converges on time: its VM exists after the
	// first sync, whatever EC2 answers.
	waitFor(t, "qa-vs's VM while EC2 throttles", func() bool { return countFleetVMs(t, vim) == 1 })
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("qa-vs got its VM after %v: the throttled provider held it back", el)
	}

	time.Sleep(20 * time.Second)
	cancel()
	select {
	case <-code:
	case <-time.After(30 * time.Second):
		t.Fatal("fleetd run did not stop")
	}

	// The SDK retries each list a few times (the one retry layer below
	// fleetd); fleetd's own attempts are the lists it logs as failed.
	var attempts []time.Time
	syncs := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		var e struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
			Peer string    `json:"peer"`
		}
		if json.Unmarshal([]byte(line), &e) != nil {
			continue
		}
		switch {
		case e.Msg == "Sync starting":
			syncs++
		case e.Msg == "Peer backs off after a transient failure" && e.Peer == "provider aws-eu":
			attempts = append(attempts, e.Time)
		}
	}
	mu.Lock()
	n := len(calls)
	// How long fleetd waited after each failed attempt (logged when the
	// SDK gave up) before the next one started (its first call).
	var waits []time.Duration
	for i := 0; i+1 < len(attempts); i++ {
		for _, c := range calls {
			if c.After(attempts[i]) {
				waits = append(waits, c.Sub(attempts[i]).Round(100*time.Millisecond))
				break
			}
		}
	}
	mu.Unlock()
	t.Logf("%d syncs; EC2 listed %d times in %d attempts over %v; waits between attempts %v", syncs, n, len(attempts), time.Since(start).Round(time.Second), waits)
	if len(waits) < 3 {
		t.Fatalf("EC2 was tried %d times in 20 s: want a few attempts backing off\n%s", len(attempts), logs.String())
	}
	// Retried at the re-sync interval (1 s) it would be about 20 attempts;
	// a backoff doubling from 1 s makes about 5 in 20 s.
	if len(attempts) > 7 {
		t.Errorf("EC2 was tried %d times in %d syncs, waits %v: the throttled provider is not backing off", len(attempts), syncs, waits)
	}
	if n > 3*len(attempts)+3 {
		t.Errorf("%d calls for %d attempts: something retries besides the SDK", n, len(attempts))
	}
	// 1 s, 2 s, 4 s, 8 s, jittered by 20% and counted from the sync's
	// second: the third wait is over 2 s, and longer than the first.
	if waits[2] < 2*time.Second || waits[2] <= waits[0] {
		t.Errorf("the waits between attempts do not grow: %v", waits)
	}
}
