package vsphere

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
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
	cfg   Config
	log   *slog.Logger
	sc    *soap.Client
	host  string
	login func(ctx context.Context, rt soap.RoundTripper, sm types.ManagedObjectReference) error
	tasks chan struct{} // a slot per vCenter task in flight
	calls chan struct{} // a slot per concurrent lookup that is not a task

	// connMu guards connecting. client and session are set once, by the
	// first call that connects and logs in; every exported method connects
	// before it reads them, so each read follows the write.
	connMu  sync.Mutex
	client  *vim25.Client
	session *sessionRoundTripper
	// refused is vCenter's refusal of the credentials: once refused, the
	// provider never logs in again (repeated failed logins lock the account
	// in SSO); a provider built from new credentials does.
	refused error

	invMu sync.Mutex
	inv   *inventory // resolved once; nil until then

	folderMu sync.Mutex
	folders  map[string]types.ManagedObjectReference // cluster folder path -> folder
	pathMu   map[string]*sync.Mutex                  // serialises creating one path

	tmplMu    sync.Mutex
	templates map[string]*template
}

var _ reconcile.Provider = (*Provider)(nil)

// New returns the provider for the vCenter of cfg.Spec. It makes no
// request: the first call connects and logs in, within that call's context,
// so an unreachable vCenter fails its own calls and nothing else. It verifies
// vCenter's TLS certificate against the system roots, or against
// Spec.CAFile when set; Spec.Insecure skips verification and is logged as a
// warning. Inventory objects (datacenter, pool, datastore, network, template)
// are looked up on first use. The caller closes the provider to log out.
func New(_ context.Context, cfg Config) (*Provider, error) {
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
	var inner http.RoundTripper = tr
	if cfg.WrapTransport != nil {
		inner = cfg.WrapTransport(tr)
	}
	sc.Client.Transport = statusTransport{inner: inner}
	// No client timeout: waiting for a long clone is one long poll. Every
	// call's context has a deadline (the sync loop bounds each call to a
	// provider, see fleetsync.Bound), and govmomi's SOAP client sends each
	// request with its context.

	p := &Provider{
		cfg:       cfg,
		log:       log,
		sc:        sc,
		host:      u.Host,
		login:     loginFunc(user, password),
		tasks:     make(chan struct{}, cfg.MaxInFlight),
		calls:     make(chan struct{}, cfg.MaxInFlight),
		folders:   map[string]types.ManagedObjectReference{},
		pathMu:    map[string]*sync.Mutex{},
		templates: map[string]*template{},
	}
	return p, nil
}

// connect connects to vCenter and logs in, once; a failure is not kept
// (the next call tries again) unless vCenter refused the credentials.
func (p *Provider) connect(ctx context.Context) error {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.client != nil {
		return nil
	}
	if p.refused != nil {
		return p.refused
	}
	sctx, status := withStatusCell(ctx)
	c, err := vim25.NewClient(sctx, p.sc)
	if err != nil {
		return wrap("connect", p.host, status.typed(err))
	}
	if c.ServiceContent.SessionManager == nil {
		return reconcile.Stalled(fmt.Errorf("vsphere: connect %s: no session manager (not a vCenter?)", p.host))
	}
	srt := &sessionRoundTripper{inner: p.sc, provider: p}
	sm := *c.ServiceContent.SessionManager
	srt.login = func(ctx context.Context, rt soap.RoundTripper) error {
		ctx, status := withStatusCell(ctx)
		return status.typed(p.login(ctx, rt, sm))
	}
	if err := srt.login(ctx, p.sc); err != nil {
		return p.loginFailed(err)
	}
	c.RoundTripper = srt
	p.client, p.session = c, srt
	p.logger(ctx).Info("Connected to vCenter", "server", p.cfg.Spec.Server)
	return nil
}

// loginFailed classifies a failed login, and remembers a refusal of the
// credentials so that no login is tried with them again.
func (p *Provider) loginFailed(err error) error {
	err = wrap("login", p.host, err)
	if isRefused(err) {
		p.refused = reconcile.Stalled(&reconcile.CredentialsError{
			Peer: "vSphere " + p.cfg.Name, Source: p.credentialSource(), Err: err,
		})
		return p.refused
	}
	return err
}

// credentialSource says where the credentials came from, for the message
// that tells what to fix.
func (p *Provider) credentialSource() string {
	if p.cfg.Username != "" {
		return "the configuration"
	}
	return p.cfg.Spec.Credentials
}

// Name returns the provider's name in fleet.yaml.
func (p *Provider) Name() string { return p.cfg.Name }

// Logins returns how many times the provider logged in again after vCenter
// dropped its session.
func (p *Provider) Logins() int64 {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.session == nil {
		return 0
	}
	return p.session.logins.Load()
}

// Close logs out of vCenter. The provider must not be used afterwards.
func (p *Provider) Close(ctx context.Context) error {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.client == nil {
		return nil
	}
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

// clusterLogger is logger for a call about one cluster's machines: the
// sync's logger already names the cluster (reconcile.Apply puts it there),
// so the key is added only to the provider's own, and no line repeats it.
func (p *Provider) clusterLogger(ctx context.Context, cluster string) *slog.Logger {
	if l, ok := reconcile.ContextLogger(ctx); ok {
		return l
	}
	return p.log.With("cluster", cluster)
}
