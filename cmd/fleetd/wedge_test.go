package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fleetd/fleetd/internal/daemon"
	"github.com/fleetd/fleetd/internal/fleetsync"
	"github.com/fleetd/fleetd/internal/metrics"
	"github.com/fleetd/fleetd/internal/testenv/kubetest"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

// TestWedgedLeaderGivesUpItsLease runs `fleetd run --leader-elect` with a
// sync that ignores its context: past the sync's deadline the replica
// releases the Lease and exits 1, so that another replica leads and the
// process is restarted, instead of holding the Lease for ever.
func TestWedgedLeaderGivesUpItsLease(t *testing.T) {
	env := startAPIServer(t, kubetest.Options{SkipCRDs: true})

	never := make(chan struct{})
	t.Cleanup(func() { close(never) })
	started := make(chan struct{}, 1)
	wr := liveWiring()
	wr.syncer = func(context.Context, RunConfig, *metrics.Metrics, *slog.Logger, fleetsync.WorldFunc) (daemon.Syncer, error) {
		return daemon.SyncerFunc(func(context.Context) daemon.Outcome {
			started <- struct{}{}
			<-never // a call that ignores its context
			return daemon.Outcome{}
		}), nil
	}

	logs := &logbuf.Buffer{}
	code := make(chan int, 1)
	go func() {
		code <- runWith(context.Background(), wr, []string{"run", "--repo", "/srv/wedged.git", "--listen", "127.0.0.1:0",
			"--work-dir", t.TempDir(), "--sync-timeout", "1s", "--git-timeout", "1s", "--call-timeout", "1s",
			"--leader-elect", "--kubeconfig", env.KubeconfigPath,
			"--leader-elect-namespace", "default", "--leader-elect-name", "fleetd-wedge-test",
			"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s",
			"--leader-elect-retry-period", "250ms"}, io.Discard, logs)
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatalf("the leader did not sync:\n%s", logs)
	}
	select {
	case c := <-code:
		if c != exitFailed {
			t.Fatalf("fleetd run exited %d, want %d:\n%s", c, exitFailed, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("a leader with a wedged sync kept running:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "did not return after its deadline") {
		t.Errorf("the log does not say why it stopped:\n%s", logs)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", env.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := cs.CoordinationV1().Leases("default").Get(context.Background(), "fleetd-wedge-test", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := holder(lease); h != "" {
		t.Errorf("the Lease is still held by %q after the wedged leader exited", h)
	}
}

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}
