package leader

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/fleetd/fleetd/internal/kubeapi"
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
	// LeaseDuration is how long the others wait after they last saw the
	// Lease change before taking over; RenewDeadline is how long the leader
	// keeps trying to renew before it gives up leading; RetryPeriod is the
	// time between tries. Defaults: 15s, 10s, 2s. RenewDeadline must be
	// shorter than LeaseDuration, so a leader that cannot renew has stopped
	// before anyone else may lead.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// OnLeading, when set, is told each change of this replica's leadership
	// (for a metric).
	OnLeading func(leading bool)
}

// Elector campaigns for the Lease and runs the leader's work. Run must not
// be called twice at once.
type Elector struct {
	cfg     Config
	leases  kubeapi.Resource[*coordinationv1.Lease, *coordinationv1.LeaseList]
	log     *slog.Logger
	leading atomic.Bool

	// observed is the Lease as last read or written, and observedAt the
	// local time its resourceVersion was first seen: expiry is judged from
	// that, on this replica's clock only, so clock skew between replicas
	// never shortens or extends a term.
	observed   *coordinationv1.Lease
	observedAt time.Time
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

// New returns an Elector for cfg. It makes no request.
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
	if cfg.RenewDeadline >= cfg.LeaseDuration {
		return nil, fmt.Errorf("leader: the renew deadline %v must be shorter than the lease duration %v", cfg.RenewDeadline, cfg.LeaseDuration)
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
	// renew deadline.
	rc := rest.CopyConfig(cfg.Rest)
	rc.Timeout = max(cfg.RenewDeadline/2, time.Second)
	rc = rest.AddUserAgent(rc, "fleetd-leader-election")
	client, err := kubeapi.New(rc)
	if err != nil {
		return nil, fmt.Errorf("leader: client: %w", err)
	}
	return &Elector{
		cfg:    cfg,
		leases: client.Leases(cfg.Namespace),
		log:    cfg.Logger.With("lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity),
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
// term ends (the Lease could not be renewed within the renew deadline, or
// another replica holds it). lead must return soon after that context is
// done, and soon after ctx is done (a graceful stop may let it finish its
// current work first; the Lease is renewed meanwhile).
//
// The Lease is released only after lead has returned, and a new campaign
// after a lost term starts only after lead has returned: the work of two
// terms never overlaps in this replica, and a replica that stops gracefully
// hands over at once instead of after the lease duration. Run returns nil
// when ctx is done.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context)) error {
	for {
		e.log.Info("Campaigning for the Lease")
		if !e.acquire(ctx) {
			return nil
		}
		if ctx.Err() != nil {
			// Stopped while acquiring: hand the Lease back without leading.
			e.release(ctx)
			return nil
		}
		e.term(ctx, lead)
		if ctx.Err() != nil {
			return nil
		}
		// The term was lost: campaign again after a pause, so that a
		// flapping API server is not hammered.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(e.cfg.RetryPeriod):
		}
	}
}

// acquire tries every retry period (jittered, so that candidates spread
// out) until this replica holds the Lease, and returns false when ctx is
// done first.
func (e *Elector) acquire(ctx context.Context) bool {
	for {
		tryCtx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
		ok, err := e.tryAcquireOrRenew(tryCtx)
		cancel()
		if ok {
			return true
		}
		var held *heldError
		switch {
		case ctx.Err() != nil:
			return false
		case err == nil, errors.As(err, &held):
		case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
			// Another candidate wrote first: read again at the next try.
			e.log.Debug("Lost a race for the Lease", "error", err.Error())
		default:
			e.log.Warn("Cannot acquire the Lease", "error", err.Error())
		}
		jitter := time.Duration(mathrand.Int64N(int64(e.cfg.RetryPeriod)/5 + 1))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(e.cfg.RetryPeriod + jitter):
		}
	}
}

// term leads: it runs lead and renews the Lease every retry period until
// lead returns or the term is lost, then waits for lead and releases the
// Lease if it still holds it.
func (e *Elector) term(ctx context.Context, lead func(ctx context.Context)) {
	// lead's context is not ctx: on a graceful stop lead finishes its work
	// while the Lease is still renewed.
	leadCtx, endTerm := context.WithCancel(context.WithoutCancel(ctx))
	defer endTerm()
	leadDone := make(chan struct{})
	e.setLeading(true)
	e.log.Info("Leading")
	go func() {
		defer close(leadDone)
		lead(leadCtx)
	}()

	lost := e.renew(leadDone)
	// Not leading from the moment the term is lost, even while lead winds
	// down: the metric and readiness say so at once.
	e.setLeading(false)
	endTerm()
	<-leadDone
	if lost {
		e.log.Warn("Lost the Lease; campaigning again")
	} else {
		e.log.Info("Leader's work ended; releasing the Lease")
	}
	e.release(ctx)
}

// renew renews the Lease every retry period until leadDone is closed
// (false) or the term is lost (true): another replica holds the Lease, or no
// renewal succeeded for the renew deadline.
func (e *Elector) renew(leadDone <-chan struct{}) (lost bool) {
	renewed := time.Now()
	t := time.NewTimer(e.cfg.RetryPeriod)
	defer t.Stop()
	for {
		select {
		case <-leadDone:
			return false
		case <-t.C:
		}
		deadline := renewed.Add(e.cfg.RenewDeadline)
		tryCtx, cancel := context.WithDeadline(context.Background(), deadline)
		ok, err := e.tryAcquireOrRenew(tryCtx)
		cancel()
		var held *heldError
		switch {
		case ok:
			renewed = time.Now()
		case errors.As(err, &held):
			e.log.Warn("Another replica holds the Lease", "leader", held.holder)
			return true
		case !time.Now().Before(deadline):
			e.log.Warn("Could not renew the Lease within the renew deadline; stepping down",
				"renew_deadline", e.cfg.RenewDeadline.String(), "error", errString(err))
			return true
		default:
			e.log.Warn("Renewing the Lease failed; trying again", "error", errString(err))
		}
		t.Reset(e.cfg.RetryPeriod)
	}
}

// heldError says another replica holds a Lease that has not expired.
type heldError struct{ holder string }

func (e *heldError) Error() string { return "the Lease is held by " + e.holder }

// tryAcquireOrRenew reads the Lease and, when it is missing, expired, free
// or this replica's, writes it with this replica as holder. The write is
// conditional: a create when the Lease is missing, an update carrying the
// resourceVersion that was read otherwise, so of two candidates that read
// the same Lease only one writes it (the other gets Conflict or
// AlreadyExists). It returns true when this replica holds the Lease now; a
// *heldError when another holds it.
func (e *Elector) tryAcquireOrRenew(ctx context.Context) (bool, error) {
	now := time.Now()
	cur, err := e.leases.Get(ctx, e.cfg.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		created, err := e.leases.Create(ctx, e.leaseFor(nil, now), metav1.CreateOptions{})
		if err != nil {
			return false, fmt.Errorf("leader: create Lease: %w", err)
		}
		e.observe(created, now)
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("leader: get Lease: %w", err)
	}
	e.observe(cur, now)
	if h := holderOf(cur); h != "" && h != e.cfg.Identity && e.observedAt.Add(e.durationOf(cur)).After(now) {
		return false, &heldError{holder: h}
	}
	return e.write(ctx, e.leaseFor(cur, now), now)
}

// write updates the Lease to next, whose resourceVersion is the one read.
func (e *Elector) write(ctx context.Context, next *coordinationv1.Lease, now time.Time) (bool, error) {
	updated, err := e.leases.Update(ctx, next.Name, next, metav1.UpdateOptions{})
	if err != nil {
		return false, fmt.Errorf("leader: update Lease: %w", err)
	}
	e.observe(updated, now)
	return true, nil
}

// observe records l as the Lease last seen; its observation time moves only
// when the Lease changed.
func (e *Elector) observe(l *coordinationv1.Lease, now time.Time) {
	if e.observed != nil && e.observed.ResourceVersion == l.ResourceVersion {
		return
	}
	if h := holderOf(l); h != "" && h != e.cfg.Identity && (e.observed == nil || holderOf(e.observed) != h) {
		e.log.Info("Another replica leads", "leader", h)
	}
	e.observed, e.observedAt = l, now
}

// leaseFor returns the Lease held by this replica from now on: a new one
// when cur is nil, else cur's successor (a new term counts a transition).
func (e *Elector) leaseFor(cur *coordinationv1.Lease, now time.Time) *coordinationv1.Lease {
	var next *coordinationv1.Lease
	if cur == nil {
		next = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.Name}}
	} else {
		next = cur.DeepCopy()
	}
	t := metav1.NewMicroTime(now)
	secs := int32(e.cfg.LeaseDuration.Round(time.Second) / time.Second)
	id := e.cfg.Identity
	s := &next.Spec
	if holderOf(next) != id {
		s.AcquireTime = &t
		if cur != nil {
			s.LeaseTransitions = new(transitionsOf(cur) + 1)
		} else {
			s.LeaseTransitions = new(int32(0))
		}
	}
	s.HolderIdentity = &id
	s.LeaseDurationSeconds = &secs
	s.RenewTime = &t
	return next
}

// release hands the Lease back when this replica still holds it, by an
// update conditional on the Lease it last wrote: a Lease another replica
// wrote meanwhile is left alone. The holder is cleared, so the others take
// over at their next try instead of after the lease duration.
func (e *Elector) release(ctx context.Context) {
	if e.observed == nil || holderOf(e.observed) != e.cfg.Identity {
		return
	}
	next := e.observed.DeepCopy()
	next.Spec.HolderIdentity = nil
	next.Spec.AcquireTime = nil
	now := metav1.NewMicroTime(time.Now())
	next.Spec.RenewTime = &now
	relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.RenewDeadline)
	defer cancel()
	updated, err := e.leases.Update(relCtx, next.Name, next, metav1.UpdateOptions{})
	switch {
	case err == nil:
		e.observe(updated, time.Now())
		e.log.Info("Released the Lease")
	case apierrors.IsConflict(err):
		e.log.Info("The Lease changed since this replica's last renewal; not releasing it")
	default:
		e.log.Warn("Cannot release the Lease; the others take over after the lease duration", "error", err.Error())
	}
}

// durationOf is the Lease's own duration when it states one, else the
// configured one.
func (e *Elector) durationOf(l *coordinationv1.Lease) time.Duration {
	if d := l.Spec.LeaseDurationSeconds; d != nil && *d > 0 {
		return time.Duration(*d) * time.Second
	}
	return e.cfg.LeaseDuration
}

func holderOf(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func transitionsOf(l *coordinationv1.Lease) int32 {
	if l.Spec.LeaseTransitions == nil {
		return 0
	}
	return *l.Spec.LeaseTransitions
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
