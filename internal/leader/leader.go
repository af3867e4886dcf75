package leader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1 "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Defaults of Config, those of Kubernetes' own controllers.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Config configures an Elector.
type Config struct {
	// Rest reaches the Kubernetes API (in-cluster or from a kubeconfig).
	Rest *rest.Config
	// Namespace and Name name the Lease.
	Namespace string
	Name      string
	// Identity is this replica's holder identity; NewIdentity() by default.
	Identity string
	// LeaseDuration is how long the others wait after the last renewal
	// before taking over; RenewDeadline is how long the leader keeps trying
	// to renew before it gives up leading; RetryPeriod is the time between
	// tries. Defaults: 15s, 10s, 2s.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// OnLeading, when set, is told each change of this replica's leadership
	// (for a metric).
	OnLeading func(leading bool)
}

// Elector campaigns for the Lease and runs the leader's work.
type Elector struct {
	cfg     Config
	lock    *resourcelock.LeaseLock
	log     *slog.Logger
	leading atomic.Bool
}

// NewIdentity returns the host name and a random suffix, so that two
// replicas on one host (or one restarted with the same pod name) never share
// an identity.
func NewIdentity() (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("leader: host name: %w", err)
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("leader: random identity: %w", err)
	}
	return host + "_" + hex.EncodeToString(b), nil
}

// New returns an Elector for cfg.
func New(cfg Config) (*Elector, error) {
	if cfg.Rest == nil {
		return nil, errors.New("leader: no Kubernetes client configuration")
	}
	if cfg.Namespace == "" || cfg.Name == "" {
		return nil, errors.New("leader: the Lease needs a namespace and a name")
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline <= 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod <= 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Identity == "" {
		id, err := NewIdentity()
		if err != nil {
			return nil, err
		}
		cfg.Identity = id
	}
	// A single hung request must not cost the Lease: each call gets half the
	// renew deadline, as client-go recommends.
	rc := rest.CopyConfig(cfg.Rest)
	rc.Timeout = max(cfg.RenewDeadline/2, time.Second)
	rc = rest.AddUserAgent(rc, "fleetd-leader-election")
	client, err := coordinationv1.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("leader: client: %w", err)
	}
	return &Elector{
		cfg: cfg,
		log: cfg.Logger.With("lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity),
		lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name},
			Client:     client,
			LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
		},
	}, nil
}

// Identity returns this replica's holder identity.
func (e *Elector) Identity() string { return e.cfg.Identity }

// Leading reports whether this replica leads now.
func (e *Elector) Leading() bool { return e.leading.Load() }

func (e *Elector) setLeading(v bool) {
	if e.leading.Swap(v) != v && e.cfg.OnLeading != nil {
		e.cfg.OnLeading(v)
	}
}

// Run campaigns for the Lease until ctx is done. Each time this replica
// becomes the leader it calls lead with a context that is done when the
// term ends (the Lease could not be renewed). lead must return soon after
// that context is done, and soon after ctx is done (a graceful stop may
// let it finish its current work first).
//
// The Lease is released only after lead has returned, and a new campaign
// after a lost term starts only after lead has returned: the work of two
// terms never overlaps in this replica, and a replica that stops gracefully
// hands over at once instead of after the lease duration. Run returns nil
// when ctx is done.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) error {
	for ctx.Err() == nil {
		if err := e.term(ctx, lead); err != nil {
			return err
		}
		if ctx.Err() != nil {
			break
		}
		// The term was lost: campaign again after a pause, so that a
		// flapping API server is not hammered.
		select {
		case <-ctx.Done():
		case <-time.After(e.cfg.RetryPeriod):
		}
	}
	return nil
}

// term campaigns once, leads until the term ends and returns when the Lease
// is released or lost and lead has returned.
func (e *Elector) term(ctx context.Context, lead func(ctx context.Context)) error {
	// The elector's context is not ctx: cancelling it releases the Lease,
	// which must wait for lead to return on a graceful stop.
	electCtx, cancelElect := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelElect()

	var (
		mu       sync.Mutex
		started  bool
		leadDone = make(chan struct{})
	)
	// While campaigning, ctx done stops the campaign at once; while
	// leading, it is lead's job to return, which then releases the Lease.
	stopCampaign := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			cancelElect()
		}
	})
	defer stopCampaign()

	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            e.lock,
		LeaseDuration:   e.cfg.LeaseDuration,
		RenewDeadline:   e.cfg.RenewDeadline,
		RetryPeriod:     e.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            e.cfg.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leadCtx context.Context) {
				defer close(leadDone)
				mu.Lock()
				if ctx.Err() != nil {
					// Stopped while acquiring: do not start work.
					mu.Unlock()
					cancelElect()
					return
				}
				started = true
				mu.Unlock()
				e.setLeading(true)
				e.log.Info("Leading")
				stopLeading := context.AfterFunc(leadCtx, func() { e.setLeading(false) })
				defer stopLeading()
				lead(leadCtx)
				e.setLeading(false)
				e.log.Info("Leader's work ended; releasing the Lease")
				cancelElect() // lead returned: stop renewing and release
			},
			OnStoppedLeading: func() {
				e.setLeading(false)
			},
			OnNewLeader: func(identity string) {
				if identity != e.cfg.Identity {
					e.log.Info("Another replica leads", "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader: %w", err)
	}
	e.log.Info("Campaigning for the Lease")
	le.Run(electCtx)

	// client-go starts OnStartedLeading in a goroutine and does not wait
	// for it. If the Lease was acquired (le.Run returned while electCtx is
	// still live: the term was lost) or lead began, that goroutine closes
	// leadDone in every case; wait for it. Otherwise the campaign was
	// stopped before any acquisition, or the goroutine will see ctx done and
	// do nothing.
	mu.Lock()
	wasStarted := started
	mu.Unlock()
	if wasStarted || electCtx.Err() == nil {
		<-leadDone
	}
	if ctx.Err() == nil && wasStarted {
		e.log.Warn("Lost the Lease; campaigning again")
	}
	return nil
}
