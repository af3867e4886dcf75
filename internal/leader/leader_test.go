package leader

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetd/fleetd/internal/daemon"
	"github.com/fleetd/fleetd/internal/kubeapi"
	"github.com/fleetd/fleetd/internal/testenv/kubetest"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

// One real kube-apiserver and etcd serve every test of the package.
var shared *kubetest.Shared

func TestMain(m *testing.M) { kubetest.Main(m, &shared, nil) }

func needAPIServer(t *testing.T) {
	t.Helper()
	shared.Need(t)
}

// replica is one fleetd replica: an elector whose leader runs a daemon with
// a syncer that logs each sync's start and end, as fleetd's log would.
type replica struct {
	name    string
	elector *Elector
	logs    *logbuf.Buffer
	cancel  context.CancelFunc
	done    chan error
}

func startReplica(t *testing.T, name, lease string, syncing *atomic.Int32, overlap *atomic.Bool) *replica {
	t.Helper()
	r := &replica{name: name, logs: &logbuf.Buffer{}, done: make(chan error, 1)}
	log := slog.New(slog.NewJSONHandler(r.logs, nil)).With("replica", name)
	e, err := New(Config{
		Rest: shared.Env.Config, Namespace: "default", Name: lease, Identity: name,
		LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 250 * time.Millisecond,
		Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.elector = e
	syncer := daemon.SyncerFunc(func(ctx context.Context) daemon.Outcome {
		if syncing.Add(1) > 1 {
			overlap.Store(true)
		}
		log.Info("Sync start", "at", time.Now().UnixNano())
		select {
		case <-time.After(40 * time.Millisecond):
		case <-ctx.Done():
		}
		log.Info("Sync end", "at", time.Now().UnixNano())
		syncing.Add(-1)
		return daemon.Outcome{Revision: "r", FetchedAt: time.Now()}
	})
	d := daemon.New(syncer, daemon.Options{
		Schedule: daemon.Schedule{PollInterval: 50 * time.Millisecond, MinResync: 10 * time.Millisecond},
		Logger:   slog.New(slog.DiscardHandler),
	})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.done <- e.Run(ctx, func(leadCtx context.Context) { _ = d.Run(leadCtx, ctx.Done()) })
	}()
	return r
}

// stop stops the replica as SIGTERM would and waits for it.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("%s: %v", r.name, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not stop", r.name)
	}
}

type span struct {
	replica    string
	start, end int64
}

// syncSpans reads the sync intervals from a replica's JSON log.
func syncSpans(t *testing.T, r *replica) []span {
	t.Helper()
	var out []span
	sc := bufio.NewScanner(strings.NewReader(r.logs.String()))
	for sc.Scan() {
		var line struct {
			Msg string `json:"msg"`
			At  int64  `json:"at"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("%s: log line %q: %v", r.name, sc.Text(), err)
		}
		switch line.Msg {
		case "Sync start":
			out = append(out, span{replica: r.name, start: line.At})
		case "Sync end":
			if len(out) == 0 || out[len(out)-1].end != 0 {
				t.Fatalf("%s: a sync ended that never started", r.name)
			}
			out[len(out)-1].end = line.At
		}
	}
	return out
}

func waitLeader(t *testing.T, within time.Duration, rs ...*replica) *replica {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, r := range rs {
			if r.elector.Leading() {
				return r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func leases(t *testing.T) kubeapi.Resource[*coordinationv1.Lease, *coordinationv1.LeaseList] {
	t.Helper()
	c, err := kubeapi.New(shared.Env.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c.Leases("default")
}

func getLease(t *testing.T, lease string) *coordinationv1.Lease {
	t.Helper()
	l, err := leases(t).Get(context.Background(), lease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func holder(t *testing.T, lease string) string {
	t.Helper()
	return holderOf(getLease(t, lease))
}

func TestFailoverOnARealAPIServer(t *testing.T) {
	needAPIServer(t)
	const lease = "fleetd-failover"
	var syncing atomic.Int32
	var overlap atomic.Bool
	a := startReplica(t, "replica-a", lease, &syncing, &overlap)
	b := startReplica(t, "replica-b", lease, &syncing, &overlap)

	first := waitLeader(t, 15*time.Second, a, b)
	if first == nil {
		t.Fatal("nobody leads after 15s")
	}
	other := map[*replica]*replica{a: b, b: a}[first]
	time.Sleep(time.Second) // let the leader sync for a while
	if other.elector.Leading() {
		t.Fatal("two replicas lead at once")
	}
	if h := holder(t, lease); h != first.name {
		t.Errorf("Lease held by %q, want %q", h, first.name)
	}

	// Stop the leader as SIGTERM would: it finishes its sync, releases the
	// Lease, and the other leads within 15 s.
	t0 := time.Now()
	first.stop(t)
	if first.elector.Leading() {
		t.Error("a stopped replica still says it leads")
	}
	if second := waitLeader(t, 15*time.Second, other); second == nil {
		t.Fatal("the other replica does not lead within 15s of the leader's stop")
	}
	took := time.Since(t0)
	t.Logf("failover took %v", took)
	time.Sleep(time.Second) // the new leader syncs
	if h := holder(t, lease); h != other.name {
		t.Errorf("Lease held by %q after failover, want %q", h, other.name)
	}
	other.stop(t)
	if h := holder(t, lease); h != "" {
		t.Errorf("Lease still held by %q after both stopped: it was not released", h)
	}

	// Assert from both logs: syncs never overlap, each replica synced, and
	// the first leader's last sync ended before the second's first began.
	if overlap.Load() {
		t.Error("two syncs ran at once")
	}
	spans := append(syncSpans(t, a), syncSpans(t, b)...)
	sort.Slice(spans, func(i, j int) bool { return spans[i].start < spans[j].start })
	synced := map[string]int{}
	for i, s := range spans {
		synced[s.replica]++
		if s.end == 0 {
			t.Errorf("%s: a sync never ended", s.replica)
		}
		if i > 0 && s.start < spans[i-1].end {
			t.Errorf("%s's sync started at %d before %s's ended at %d", s.replica, s.start, spans[i-1].replica, spans[i-1].end)
		}
	}
	if synced[a.name] == 0 || synced[b.name] == 0 {
		t.Errorf("syncs per replica %v: both must have synced", synced)
	}
}

func TestLostLeaseEndsTheTermAndCampaignsAgain(t *testing.T) {
	needAPIServer(t)
	const lease = "fleetd-stolen"
	var syncing atomic.Int32
	var overlap atomic.Bool
	a := startReplica(t, "replica-a", lease, &syncing, &overlap)
	defer a.stop(t)
	if waitLeader(t, 15*time.Second, a) == nil {
		t.Fatal("a lone replica does not lead")
	}
	// Someone else takes the Lease (an operator, or a replica that believed
	// it had expired): the term must end and the work stop.
	l := getLease(t, lease)
	intruder := "intruder"
	l.Spec.HolderIdentity = &intruder
	now := metav1.NewMicroTime(time.Now())
	l.Spec.RenewTime = &now
	if _, err := leases(t).Update(context.Background(), lease, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.elector.Leading() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if a.elector.Leading() {
		t.Fatal("the replica still leads after its Lease was taken")
	}
	time.Sleep(200 * time.Millisecond)
	if n := syncing.Load(); n != 0 {
		t.Errorf("%d syncs running after the term ended", n)
	}
	// The intruder never renews: after the lease duration the replica leads again.
	if waitLeader(t, 15*time.Second, a) == nil {
		t.Fatal("the replica did not campaign again")
	}
}

func TestNewIdentityIsUnique(t *testing.T) {
	a, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewIdentity()
	host, _ := os.Hostname()
	if a == b || !strings.HasPrefix(a, host+"_") {
		t.Errorf("identities %q and %q", a, b)
	}
}
