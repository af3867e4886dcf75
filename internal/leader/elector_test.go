package leader

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// The timings of these tests: a follower takes over 4 s after it last saw
// the Lease change; a leader that cannot renew stops after 3 s.
const (
	testLease   = 4 * time.Second
	testRenew   = 3 * time.Second
	testRetry   = 250 * time.Millisecond
	testTimeout = 20 * time.Second
)

// candidate is an Elector whose work only records that it runs.
type candidate struct {
	name    string
	e       *Elector
	cancel  context.CancelFunc
	done    chan error
	terms   atomic.Int32 // terms begun
	running *atomic.Int32
	overlap *atomic.Bool
	lost    chan struct{} // closed when a term's context ends
}

func startCandidate(t *testing.T, name, lease string, rc *rest.Config, running *atomic.Int32, overlap *atomic.Bool) *candidate {
	t.Helper()
	e, err := New(Config{
		Rest: rc, Namespace: "default", Name: lease, Identity: name,
		LeaseDuration: testLease, RenewDeadline: testRenew, RetryPeriod: testRetry,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)).With("candidate", name),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{name: name, e: e, cancel: cancel, done: make(chan error, 1), running: running, overlap: overlap, lost: make(chan struct{}, 8)}
	go func() {
		c.done <- e.Run(ctx, func(leadCtx context.Context) {
			c.terms.Add(1)
			if c.running.Add(1) > 1 {
				c.overlap.Store(true)
			}
			defer c.running.Add(-1)
			select {
			case <-leadCtx.Done():
				c.lost <- struct{}{}
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop stops the candidate as SIGTERM would and waits for Run to return.
func (c *candidate) stop(t *testing.T) {
	t.Helper()
	c.cancel()
	select {
	case err, ok := <-c.done:
		if ok && err != nil {
			t.Errorf("%s: Run: %v", c.name, err)
		}
		if ok {
			close(c.done)
		}
	case <-time.After(testTimeout):
		t.Fatalf("%s: Run did not return after its context was done", c.name)
	}
}

// watchLeaders samples the candidates until stop is closed and reports
// whether two ever led at once.
func watchLeaders(cs ...*candidate) (stop func() bool) {
	var both atomic.Bool
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			n := 0
			for _, c := range cs {
				if c.e.Leading() {
					n++
				}
			}
			if n > 1 {
				both.Store(true)
			}
			select {
			case <-quit:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	return func() bool { close(quit); wg.Wait(); return both.Load() }
}

func leaderOf(within time.Duration, cs ...*candidate) *candidate {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, c := range cs {
			if c.e.Leading() {
				return c
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func TestTwoCandidatesOneLeads(t *testing.T) {
	needAPIServer(t)
	const lease = "elect-two"
	var running atomic.Int32
	var overlap atomic.Bool
	a := startCandidate(t, "a", lease, shared.Env.Config, &running, &overlap)
	b := startCandidate(t, "b", lease, shared.Env.Config, &running, &overlap)
	stop := watchLeaders(a, b)
	first := leaderOf(testTimeout, a, b)
	if first == nil {
		t.Fatal("no candidate leads")
	}
	time.Sleep(testLease + time.Second) // past a lease duration: the leader renews, the other waits
	if stop() || overlap.Load() {
		t.Error("both candidates led at once")
	}
	if !first.e.Leading() {
		t.Errorf("%s stopped leading without cause", first.name)
	}
	l := getLease(t, lease)
	if h := holderOf(l); h != first.name {
		t.Errorf("Lease held by %q, want %q", h, first.name)
	}
	if d := l.Spec.LeaseDurationSeconds; d == nil || *d != int32(testLease/time.Second) {
		t.Errorf("Lease duration %v, want %v", d, testLease)
	}
	if n := a.terms.Load() + b.terms.Load(); n != 1 {
		t.Errorf("%d terms began, want 1", n)
	}
}

func TestReleaseOnStopIsImmediate(t *testing.T) {
	needAPIServer(t)
	const lease = "elect-release"
	var running atomic.Int32
	var overlap atomic.Bool
	a := startCandidate(t, "a", lease, shared.Env.Config, &running, &overlap)
	if leaderOf(testTimeout, a) == nil {
		t.Fatal("a lone candidate does not lead")
	}
	b := startCandidate(t, "b", lease, shared.Env.Config, &running, &overlap)
	stop := watchLeaders(a, b)
	time.Sleep(time.Second) // b has seen the Lease held

	t0 := time.Now()
	a.stop(t)
	if a.e.Leading() {
		t.Error("a stopped candidate says it leads")
	}
	if leaderOf(testTimeout, b) == nil {
		t.Fatal("b never leads after a stopped")
	}
	took := time.Since(t0)
	t.Logf("b leads %v after a's stop", took)
	// Without a release b would wait a lease duration after it last saw
	// a's renewal.
	if took >= testLease {
		t.Errorf("b took %v to lead, not less than the lease duration %v: the Lease was not released", took, testLease)
	}
	if stop() || overlap.Load() {
		t.Error("both candidates led at once")
	}
	b.stop(t)
	if h := holder(t, lease); h != "" {
		t.Errorf("Lease held by %q after both stopped", h)
	}
}

// hangProxy forwards TCP connections to the API server until hang is
// called; from then on it closes the connections it forwards and accepts
// new ones without ever answering, as a partitioned or hung server does.
type hangProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	hung   bool
	conns  []net.Conn
}

func startHangProxy(t *testing.T, target string) *hangProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hangProxy{ln: ln, target: target}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			hung := p.hung
			p.mu.Unlock()
			if hung {
				continue // held open, never answered
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *hangProxy) hang() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hung = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *hangProxy) config(t *testing.T) *rest.Config {
	t.Helper()
	rc := rest.CopyConfig(shared.Env.Config)
	rc.Host = "https://" + p.ln.Addr().String()
	return rc
}

func apiServerAddr(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(shared.Env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func TestLeaderThatCannotRenewStepsDown(t *testing.T) {
	needAPIServer(t)
	const lease = "elect-partition"
	var running atomic.Int32
	var overlap atomic.Bool
	proxy := startHangProxy(t, apiServerAddr(t))
	a := startCandidate(t, "a", lease, proxy.config(t), &running, &overlap)
	if leaderOf(testTimeout, a) == nil {
		t.Fatal("a lone candidate does not lead through the proxy")
	}
	b := startCandidate(t, "b", lease, shared.Env.Config, &running, &overlap)
	stop := watchLeaders(a, b)
	time.Sleep(time.Second)

	// a can no longer reach the API server: its renewals hang. It must
	// stop leading by the renew deadline, before b may lead.
	t0 := time.Now()
	proxy.hang()
	select {
	case <-a.lost:
	case <-time.After(testRenew + 2*time.Second):
		t.Fatalf("a still leads %v after it lost the API server (renew deadline %v)", time.Since(t0), testRenew)
	}
	steppedDown := time.Since(t0)
	if a.e.Leading() {
		t.Error("a says it leads after its term ended")
	}
	if leaderOf(testTimeout, b) == nil {
		t.Fatal("b never leads")
	}
	tookOver := time.Since(t0)
	t.Logf("a stepped down after %v, b leads after %v", steppedDown, tookOver)
	if steppedDown < testRenew-testRetry {
		t.Errorf("a stepped down after %v, before its renew deadline %v", steppedDown, testRenew)
	}
	// b judges expiry from the last change it saw: a lease duration after
	// a's last renewal at the latest, plus one try.
	if tookOver > testLease+time.Second+2*testRetry {
		t.Errorf("b led %v after a's last chance to renew, want within the lease duration %v and a try", tookOver, testLease)
	}
	if stop() || overlap.Load() {
		t.Error("both candidates led at once")
	}
	if h := holder(t, lease); h != "b" {
		t.Errorf("Lease held by %q, want b", h)
	}
}

func TestConflictingWrites(t *testing.T) {
	needAPIServer(t)
	t.Run("candidates racing for a new Lease", func(t *testing.T) {
		const lease = "elect-race"
		var running atomic.Int32
		var overlap atomic.Bool
		var cs []*candidate
		for _, n := range []string{"c1", "c2", "c3", "c4"} {
			cs = append(cs, startCandidate(t, n, lease, shared.Env.Config, &running, &overlap))
		}
		stop := watchLeaders(cs...)
		first := leaderOf(testTimeout, cs...)
		if first == nil {
			t.Fatal("no candidate leads")
		}
		time.Sleep(2 * time.Second)
		if stop() || overlap.Load() {
			t.Error("two candidates led at once")
		}
		l := getLease(t, lease)
		if h := holderOf(l); h != first.name {
			t.Errorf("Lease held by %q, want %q", h, first.name)
		}
		// Only the creation ever succeeded: no candidate overwrote another.
		if tr := transitionsOf(l); tr != 0 {
			t.Errorf("%d lease transitions, want 0", tr)
		}
	})

	t.Run("an update from a stale read", func(t *testing.T) {
		const lease = "elect-stale"
		e, err := New(Config{Rest: shared.Env.Config, Namespace: "default", Name: lease, Identity: "e",
			LeaseDuration: testLease, RenewDeadline: testRenew, RetryPeriod: testRetry,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if ok, err := e.tryAcquireOrRenew(ctx); !ok || err != nil {
			t.Fatalf("acquire a new Lease: %v, %v", ok, err)
		}
		stale := e.observed.DeepCopy()
		// Another writer changes the Lease after e read it.
		l := getLease(t, lease)
		other := "other"
		l.Spec.HolderIdentity = &other
		if _, err := leases(t).Update(ctx, lease, l, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		ok, err := e.write(ctx, e.leaseFor(stale, time.Now()), time.Now())
		if ok || !apierrors.IsConflict(err) {
			t.Fatalf("write from a stale read: %v, %v; want a Conflict", ok, err)
		}
		if h := holder(t, lease); h != "other" {
			t.Errorf("Lease held by %q, want other: the stale write overwrote it", h)
		}
		// The next try reads the Lease again and finds it held.
		ok, err = e.tryAcquireOrRenew(ctx)
		var held *heldError
		if ok || !errors.As(err, &held) || held.holder != "other" {
			t.Errorf("try after the conflict: %v, %v; want held by other", ok, err)
		}
		// A release must not clear another's Lease.
		e.observed = stale
		e.release(ctx)
		if h := holder(t, lease); h != "other" {
			t.Errorf("Lease held by %q after a release from a stale read, want other", h)
		}
	})
}

// TestExpiryIgnoresTheHoldersClock pins that expiry is judged by the time
// this replica saw the Lease change, never by the renew time the holder
// wrote with its own clock.
func TestExpiryIgnoresTheHoldersClock(t *testing.T) {
	needAPIServer(t)
	for _, tc := range []struct {
		name string
		skew time.Duration
	}{{"holder's clock an hour behind", -time.Hour}, {"holder's clock an hour ahead", time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			lease := "elect-skew-behind"
			if tc.skew > 0 {
				lease = "elect-skew-ahead"
			}
			ctx := context.Background()
			renewAs := func(l *coordinationv1.Lease) *coordinationv1.Lease {
				t.Helper()
				h := "skewed"
				secs := int32(testLease / time.Second)
				now := metav1.NewMicroTime(time.Now().Add(tc.skew))
				l.Spec = coordinationv1.LeaseSpec{HolderIdentity: &h, LeaseDurationSeconds: &secs, RenewTime: &now, AcquireTime: &now}
				var out *coordinationv1.Lease
				var err error
				if l.ResourceVersion == "" {
					out, err = leases(t).Create(ctx, l, metav1.CreateOptions{})
				} else {
					out, err = leases(t).Update(ctx, lease, l, metav1.UpdateOptions{})
				}
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			l := renewAs(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: lease}})
			var running atomic.Int32
			var overlap atomic.Bool
			c := startCandidate(t, "c", lease, shared.Env.Config, &running, &overlap)
			// The skewed holder renews for longer than a lease duration: c never
			// leads.
			for end := time.Now().Add(testLease + 2*time.Second); time.Now().Before(end); {
				time.Sleep(time.Second)
				if c.e.Leading() {
					t.Fatal("c leads while the holder renews")
				}
				l = renewAs(l)
			}
			// The holder stops renewing: c leads a lease duration later.
			t0 := time.Now()
			if leaderOf(testLease+2*time.Second, c) == nil {
				t.Fatalf("c does not lead within %v of the holder's last renewal", testLease+2*time.Second)
			}
			took := time.Since(t0)
			t.Logf("c leads %v after the last renewal", took)
			if took < testLease-testRetry {
				t.Errorf("c led %v after the holder's last renewal, before the lease duration %v", took, testLease)
			}
		})
	}
}
