package vsphere

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/fleetd/fleetd/reconcile"
)

// Provider is a reconcile.Provider for one vsphere entry of fleet.yaml and one
// fleet. It is safe for concurrent use.
type Provider struct {
	cfg     Config
	log     *slog.Logger
	client  *vim25.Client
	session *sessionRoundTripper
	tasks   chan struct{} // a slot per vCenter task in flight
	calls   chan struct{} // a slot per concurrent lookup that is not a task

	invMu sync.Mutex
	inv   *inventory // resolved once; nil until then

	folderMu sync.Mutex
	folders  map[string]types.ManagedObjectReference // cluster folder path -> folder
	pathMu   map[string]*sync.Mutex                  // serialises creating one path

	tmplMu    sync.Mutex
	templates map[string]*template
}

var _ reconcile.Provider = (*Provider)(nil)

// New connects to the vCenter of cfg.Spec, logs in and returns the provider.
// It verifies vCenter's TLS certificate against the system roots, or against
// Spec.CAFile when set; Spec.Insecure skips verification and is logged as a
// warning. Inventory objects (datacenter, pool, datastore, network, template)
// are looked up on first use. The caller closes the provider to log out.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if err := cfg.validate(); err != nil {
		return nil, reconcile.Stalled(fmt.Errorf("vsphere: provider %s: %w", cfg.Name, err))
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("provider", cfg.Name, "fleet", cfg.Fleet)

	user, password := cfg.Username, cfg.Password
	if user == "" {
		var err error
		if user, password, err = ResolveCredentials(cfg.Spec.Credentials); err != nil {
			return nil, err
		}
	}

	u, err := soap.ParseURL(cfg.Spec.Server)
	if err != nil || u == nil {
		return nil, reconcile.Stalled(fmt.Errorf("vsphere: provider %s: server %q is not a URL", cfg.Name, cfg.Spec.Server))
	}
	u.User = nil // never carry credentials from the URL into logs or errors
	if u.Scheme != "https" && !cfg.Spec.Insecure {
		return nil, reconcile.Stalled(fmt.Errorf("vsphere: provider %s: server %s is not https (set insecure: true to allow it)", cfg.Name, u))
	}
	if cfg.Spec.Insecure {
		log.Warn("TLS verification of vCenter is off (insecure: true)", "server", u.String())
	}
	sc := soap.NewClient(u, cfg.Spec.Insecure)
	if cfg.Spec.CAFile != "" && !cfg.Spec.Insecure {
		if err := sc.SetRootCAs(cfg.Spec.CAFile); err != nil {
			return nil, reconcile.Stalled(fmt.Errorf("vsphere: provider %s: caFile: %w", cfg.Name, err))
		}
	}
	// Keep a connection per task in flight and per lookup alive, instead of
	// the transport's default of two idle connections per host.
	tr := sc.DefaultTransport()
	tr.MaxIdleConnsPerHost = 2*cfg.MaxInFlight + 4
	if cfg.WrapTransport != nil {
		sc.Client.Transport = cfg.WrapTransport(tr)
	}
	// No client timeout: waiting for a long clone is one long poll, and
	// callers bound every call with their context.

	c, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, wrap("connect", u.Host, err)
	}
	srt := &sessionRoundTripper{inner: sc}
	c.RoundTripper = srt
	if c.ServiceContent.SessionManager == nil {
		return nil, fmt.Errorf("vsphere: connect %s: no session manager (not a vCenter?)", u.Host)
	}
	srt.login = loginFunc(*c.ServiceContent.SessionManager, user, password)
	if err := srt.login(ctx, sc); err != nil {
		return nil, wrap("login", u.Host, err)
	}

	p := &Provider{
		cfg:       cfg,
		log:       log,
		client:    c,
		session:   srt,
		tasks:     make(chan struct{}, cfg.MaxInFlight),
		calls:     make(chan struct{}, cfg.MaxInFlight),
		folders:   map[string]types.ManagedObjectReference{},
		pathMu:    map[string]*sync.Mutex{},
		templates: map[string]*template{},
	}
	log.Info("Connected to vCenter", "server", u.String())
	return p, nil
}

// Name returns the provider's name in fleet.yaml.
func (p *Provider) Name() string { return p.cfg.Name }

// Logins returns how many times the provider logged in again after vCenter
// dropped its session.
func (p *Provider) Logins() int64 { return p.session.logins.Load() }

// Close logs out of vCenter. The provider must not be used afterwards.
func (p *Provider) Close(ctx context.Context) error {
	_, err := methods.Logout(ctx, p.client.Client, &types.Logout{This: *p.client.ServiceContent.SessionManager})
	p.client.CloseIdleConnections()
	if err != nil && !isNotAuthenticated(err) {
		return wrap("logout", p.cfg.Spec.Server, err)
	}
	return nil
}

// acquire takes a slot of sem, or gives up when ctx ends.
func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// logger returns the logger of the work at hand: the reconciler's, from the
// context, with the cluster and revision attached; else the provider's.
func (p *Provider) logger(ctx context.Context) *slog.Logger {
	if l, ok := reconcile.ContextLogger(ctx); ok {
		return l
	}
	return p.log
}
