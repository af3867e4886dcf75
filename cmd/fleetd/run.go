package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/fleetd/fleetd/internal/daemon"
	"github.com/fleetd/fleetd/internal/fleetsync"
	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/internal/leader"
	"github.com/fleetd/fleetd/internal/metrics"
	"github.com/fleetd/fleetd/internal/server"
)

// RunConfig is what the sync loop needs from `fleetd run`'s flags.
type RunConfig struct {
	// RepoURL is the fleet repo's URL (https://, ssh://, scp-like or a path).
	RepoURL string
	// Branch is the tracked branch.
	Branch string
	// HTTPSTokenFile holds the HTTPS token; "" when unset.
	HTTPSTokenFile string
	// SSHKeyFile holds the SSH private key and SSHKnownHostsFile the known
	// hosts; "" when unset.
	SSHKeyFile        string
	SSHKnownHostsFile string
	// WorkDir is where the kept clone lives.
	WorkDir string
	// DryRun plans and reports, and changes nothing.
	DryRun bool
	// Concurrency is how many clusters are worked on at once.
	Concurrency int
	// PollInterval is the daemon's poll interval (for the loop's own
	// timing decisions, if any).
	PollInterval time.Duration
	// GitTimeout bounds each fetch from and push to the fleet repo.
	GitTimeout time.Duration
	// CallTimeout bounds each call to a provider, Rancher or a downstream
	// cluster (creates, deletes and drains get fleetsync.ChangeTimeoutFactor
	// times as long).
	CallTimeout time.Duration
}

var klogOnce sync.Once

// runOptions are `fleetd run`'s flags.
type runOptions struct {
	RunConfig
	resync          time.Duration
	listen          string
	githubSecret    string
	gitlabToken     string
	syncToken       string
	logFormat       string
	logLevel        string
	shutdownTimeout time.Duration
	syncTimeout     time.Duration
	leaderElect     bool
	leaderNamespace string
	leaderName      string
	leaseDuration   time.Duration
	renewDeadline   time.Duration
	retryPeriod     time.Duration
	kubeconfig      string
	maxConns        int
	maxInFlight     int
}

func init() {
	subcommands = append(subcommands, newRunCmd)
}

// envPrefix prefixes every flag's environment variable: --poll-interval is
// FLEETD_POLL_INTERVAL.
const envPrefix = "FLEETD_"

func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func newRunCmd(w *wiring) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon: sync the fleet repo on a poll, on webhooks and on request",
		Long: `Run keeps the world matching the fleet repo. It syncs at start, then every
poll interval (with ±10% jitter), at once on a GitLab or GitHub push webhook for
the tracked branch or on POST /hooks/sync, again within the re-sync interval
while work is in progress, and with backoff from 1s up to the poll interval
(at most 5min) after transient errors. A stalled sync (an invalid fleet.yaml,
a bad spec) waits for a new commit. Syncs run one at a time; a burst of
webhooks makes at most one more. The work directory is locked: a second
daemon on it exits at once.

Every flag can be set by an environment variable: FLEETD_ and the flag's name
in capitals with underscores (--poll-interval: FLEETD_POLL_INTERVAL). A flag
given on the command line wins over its variable.

HTTP (--listen): POST /hooks/gitlab (X-Gitlab-Token), POST /hooks/github
(X-Hub-Signature-256), POST /hooks/sync (Authorization: Bearer), each only
when its secret file is given; GET /healthz, /readyz, /metrics. At most
--max-connections connections are open and --webhook-max-in-flight webhook
bodies (1 MiB each at most) are read at once; more get 503 with Retry-After.
Refused webhooks are counted in fleetd_webhook_refused_total and logged in
one summary per minute.

With --leader-elect, replicas elect a leader through a coordination.k8s.io
Lease; only the leader syncs and answers ready.

Every fetch and push has a deadline (--git-timeout), so has every call to a
provider, Rancher or a downstream cluster (--call-timeout; 5 times it for
creates, deletes and drains) and every sync (--sync-timeout): a peer that never
answers fails the sync as a transient error that names the call. /healthz
answers 503 when no sync has finished within 3 times --sync-timeout while one
was due; a sync that ignores its deadline makes fleetd release the Lease and
exit 1, so that it is restarted.

On SIGTERM or SIGINT it stops taking triggers, lets the sync in flight finish
(at most --shutdown-timeout), releases the Lease and exits 0.`,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), os.LookupEnv); err != nil {
				return usageError(err)
			}
			return o.validate()
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.Context(), w, o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.RepoURL, "repo", "", "URL of the fleet repo (required)")
	f.StringVar(&o.Branch, "branch", "main", "tracked branch")
	f.StringVar(&o.HTTPSTokenFile, "https-token-file", "", "file holding the HTTPS token for the fleet repo")
	f.StringVar(&o.SSHKeyFile, "ssh-key-file", "", "file holding the SSH private key for the fleet repo")
	f.StringVar(&o.SSHKnownHostsFile, "ssh-known-hosts-file", "", "known_hosts file for the fleet repo's SSH host")
	f.StringVar(&o.WorkDir, "work-dir", "", "directory of the kept clone (default: the user cache directory's fleetd/)")
	f.DurationVar(&o.PollInterval, "poll-interval", daemon.DefaultPollInterval, "time between polls of the fleet repo (±10% jitter)")
	f.DurationVar(&o.resync, "resync-interval", daemon.DefaultShortResync, "longest wait before syncing again while work is in progress")
	f.StringVar(&o.listen, "listen", ":8080", "address of the HTTP server (webhooks, health, metrics)")
	f.StringVar(&o.githubSecret, "github-webhook-secret-file", "", "file holding the GitHub webhook secret (enables POST /hooks/github)")
	f.StringVar(&o.gitlabToken, "gitlab-webhook-token-file", "", "file holding the GitLab webhook token (enables POST /hooks/gitlab)")
	f.StringVar(&o.syncToken, "sync-token-file", "", "file holding the bearer token of POST /hooks/sync (enables it)")
	f.IntVar(&o.Concurrency, "concurrency", 8, "clusters worked on at once")
	f.BoolVar(&o.DryRun, "dry-run", false, "plan and report, change nothing")
	f.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 2*time.Minute, "how long a stop lets the sync in flight finish before cancelling it")
	f.DurationVar(&o.syncTimeout, "sync-timeout", daemon.DefaultSyncTimeout, "deadline of one sync; /healthz fails when no sync finished within 3 times it")
	f.DurationVar(&o.GitTimeout, "git-timeout", fgit.DefaultTimeout, "deadline of each fetch from and push to the fleet repo")
	f.DurationVar(&o.CallTimeout, "call-timeout", fleetsync.DefaultCallTimeout, "deadline of each call to a provider, Rancher or a downstream cluster (creates, deletes and drains: 5 times it)")
	f.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader among replicas through a Lease; only the leader syncs")
	f.StringVar(&o.leaderNamespace, "leader-elect-namespace", "", "namespace of the Lease (default: the pod's namespace)")
	f.StringVar(&o.leaderName, "leader-elect-name", "fleetd", "name of the Lease")
	f.DurationVar(&o.leaseDuration, "leader-elect-lease-duration", leader.DefaultLeaseDuration, "how long followers wait after the leader's last renewal")
	f.DurationVar(&o.renewDeadline, "leader-elect-renew-deadline", leader.DefaultRenewDeadline, "how long the leader tries to renew before it stops leading")
	f.DurationVar(&o.retryPeriod, "leader-elect-retry-period", leader.DefaultRetryPeriod, "time between tries to acquire or renew the Lease")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for the Lease (default: in-cluster configuration)")
	f.IntVar(&o.maxConns, "max-connections", server.DefaultMaxConns, "open HTTP connections at most; more wait in the kernel's accept queue")
	f.IntVar(&o.maxInFlight, "webhook-max-in-flight", server.DefaultMaxInFlight,
		fmt.Sprintf("webhook requests whose bodies are read at once (1..%d); more get 503 with Retry-After", maxInFlightLimit))
	return cmd
}

// applyEnv sets every flag not given on the command line from its FLEETD_*
// variable, when that is set: an explicit flag wins, as with kubectl and
// flux.
func applyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" {
			return
		}
		name := envName(f.Name)
		v, ok := lookup(name)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
		}
	})
	return errors.Join(errs...)
}

func (o *runOptions) validate() error {
	var errs []error
	if o.RepoURL == "" {
		errs = append(errs, errors.New("--repo (FLEETD_REPO) is required"))
	}
	if o.HTTPSTokenFile != "" && o.SSHKeyFile != "" {
		errs = append(errs, errors.New("--https-token-file and --ssh-key-file exclude each other"))
	}
	if o.PollInterval < time.Second {
		errs = append(errs, fmt.Errorf("--poll-interval must be at least 1s, not %s", o.PollInterval))
	}
	if o.resync < time.Second {
		errs = append(errs, fmt.Errorf("--resync-interval must be at least 1s, not %s", o.resync))
	}
	if o.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("--concurrency must be at least 1, not %d", o.Concurrency))
	}
	if o.logFormat != "json" && o.logFormat != "text" {
		errs = append(errs, fmt.Errorf("--log-format must be json or text, not %q", o.logFormat))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	if o.maxConns < 1 {
		errs = append(errs, fmt.Errorf("--max-connections must be at least 1, not %d", o.maxConns))
	}
	if o.maxInFlight < 1 || o.maxInFlight > maxInFlightLimit {
		errs = append(errs, fmt.Errorf("--webhook-max-in-flight must be within 1..%d, not %d: each costs up to a 1 MiB body", maxInFlightLimit, o.maxInFlight))
	}
	if o.shutdownTimeout <= 0 {
		errs = append(errs, errors.New("--shutdown-timeout must be positive"))
	}
	for _, t := range []struct {
		flag string
		d    time.Duration
	}{{"sync-timeout", o.syncTimeout}, {"git-timeout", o.GitTimeout}, {"call-timeout", o.CallTimeout}} {
		if t.d <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, not %s", t.flag, t.d))
		}
	}
	if o.GitTimeout > o.syncTimeout || o.CallTimeout > o.syncTimeout {
		errs = append(errs, fmt.Errorf("--git-timeout and --call-timeout must not exceed --sync-timeout (%s)", o.syncTimeout))
	}
	if o.leaderElect {
		if o.leaderName == "" {
			errs = append(errs, errors.New("--leader-elect-name must not be empty"))
		}
		if !(o.leaseDuration > o.renewDeadline && o.renewDeadline > o.retryPeriod && o.retryPeriod > 0) {
			errs = append(errs, errors.New("the Lease needs lease duration > renew deadline > retry period > 0"))
		}
	}
	if len(errs) > 0 {
		return usageError(errors.Join(errs...))
	}
	return nil
}

func (o *runOptions) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(o.logLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if o.logFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// readSecret reads a secret file, without the surrounding white space a
// Secret volume or an editor may add. An empty secret is refused: an HMAC
// with an empty key authenticates nothing.
func readSecret(flag, path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil, fmt.Errorf("--%s: %s is empty", flag, path)
	}
	return []byte(s), nil
}

// maxInFlightLimit bounds --webhook-max-in-flight: with 1 MiB bodies,
// senders without the secret can make fleetd hold at most 64 MiB.
const maxInFlightLimit = 64

// inClusterNamespace is where a pod's service account says it runs.
const inClusterNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func (o *runOptions) restConfig() (*rest.Config, string, error) {
	var (
		cfg *rest.Config
		err error
		ns  = o.leaderNamespace
	)
	if o.kubeconfig != "" {
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: o.kubeconfig}, &clientcmd.ConfigOverrides{})
		if cfg, err = cc.ClientConfig(); err != nil {
			return nil, "", fmt.Errorf("--kubeconfig: %w", err)
		}
		if ns == "" {
			if ns, _, err = cc.Namespace(); err != nil {
				return nil, "", fmt.Errorf("--kubeconfig: namespace: %w", err)
			}
		}
	} else {
		if cfg, err = rest.InClusterConfig(); err != nil {
			return nil, "", fmt.Errorf("--leader-elect needs --kubeconfig outside a cluster: %w", err)
		}
		if ns == "" {
			if ns = os.Getenv("POD_NAMESPACE"); ns == "" {
				b, err := os.ReadFile(inClusterNamespace)
				if err != nil {
					return nil, "", fmt.Errorf("--leader-elect-namespace not given and the pod's namespace is unknown: %w", err)
				}
				ns = strings.TrimSpace(string(b))
			}
		}
	}
	if ns == "" {
		ns = "default"
	}
	return cfg, ns, nil
}

// runDaemon wires and runs the daemon until ctx is done (SIGTERM, SIGINT).
func runDaemon(ctx context.Context, w *wiring, o runOptions, stderr io.Writer) error {
	log := o.logger(stderr)
	// klog's logger is global and unguarded: set it once per process,
	// before any client-go goroutine reads it.
	klogOnce.Do(func() { klog.SetSlogLogger(log.With("component", "client-go")) })

	if o.WorkDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return usageError(fmt.Errorf("--work-dir not given and no user cache directory: %w", err))
		}
		o.WorkDir = filepath.Join(dir, "fleetd")
	}
	unlock, err := lockWorkDir(o.WorkDir)
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("run: %w", err)}
	}
	defer unlock()
	ghSecret, err := readSecret("github-webhook-secret-file", o.githubSecret)
	if err != nil {
		return usageError(err)
	}
	glToken, err := readSecret("gitlab-webhook-token-file", o.gitlabToken)
	if err != nil {
		return usageError(err)
	}
	syncToken, err := readSecret("sync-token-file", o.syncToken)
	if err != nil {
		return usageError(err)
	}

	m := metrics.New()
	m.SetBuildInfo(fleetdVersion(), buildRevision(), runtime.Version())
	var elector *leader.Elector
	if o.leaderElect {
		rc, ns, err := o.restConfig()
		if err != nil {
			return usageError(err)
		}
		elector, err = leader.New(leader.Config{
			Rest: rc, Namespace: ns, Name: o.leaderName,
			LeaseDuration: o.leaseDuration, RenewDeadline: o.renewDeadline, RetryPeriod: o.retryPeriod,
			Logger: log, OnLeading: m.SetLeader,
		})
		if err != nil {
			return usageError(err)
		}
		m.SetLeader(false)
	} else {
		m.SetLeader(true)
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return usageError(fmt.Errorf("--listen: %w", err))
	}
	defer ln.Close()

	syncer, err := w.syncer(ctx, o.RunConfig, m, log, w.world)
	if err != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("run: %w", err)}
	}
	var wedged bool
	if c, ok := syncer.(interface{ Close(context.Context) }); ok {
		defer func() {
			// A wedged sync still holds the loop: closing it would wait
			// for ever. The process exits; that ends its sessions.
			if !wedged {
				c.Close(context.WithoutCancel(ctx))
			}
		}()
	}
	d := daemon.New(syncer, daemon.Options{
		Schedule:    daemon.Schedule{PollInterval: o.PollInterval, ShortResync: o.resync},
		StopTimeout: o.shutdownTimeout,
		SyncTimeout: o.syncTimeout,
		Recorder:    m,
		Logger:      log,
	})
	ready := server.ReadyCheck{
		PollInterval: o.PollInterval,
		Status:       d.Status,
		Stopping:     d.Stopping,
	}
	if elector != nil {
		ready.Leading = elector.Leading
	}
	srv := server.New(server.Config{
		Branch: o.Branch, GitHubSecret: ghSecret, GitLabToken: glToken, SyncToken: syncToken,
		Trigger: d, Ready: ready.Check, Metrics: m, Logger: log,
		MaxConns: o.maxConns, MaxInFlight: o.maxInFlight,
		Healthy: func() error { return d.Health(time.Now()) },
	})

	// The HTTP server outlives the daemon: while the sync in flight
	// finishes, /healthz and /metrics still answer and webhooks get 503.
	srvCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServer()
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(srvCtx, ln) }()
	if w.onListen != nil {
		w.onListen(ln.Addr())
	}
	attrs := []any{"version", fleetdVersion(), "repo", redactURL(o.RepoURL), "branch", o.Branch, "listen", ln.Addr().String(),
		"poll_interval", o.PollInterval.String(), "sync_timeout", o.syncTimeout.String(), "dry_run", o.DryRun, "leader_elect", o.leaderElect,
		"webhooks", enabledHooks(ghSecret, glToken, syncToken)}
	if elector != nil {
		attrs = append(attrs, "identity", elector.Identity())
	}
	log.Info("fleetd run starting", attrs...)

	var runErr, leadErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		if elector == nil {
			runErr = d.Run(context.WithoutCancel(ctx), ctx.Done())
			return
		}
		// A wedged sync ends the campaign too: the Lease is released when
		// lead returns, and this replica must not lead again while the
		// wedged sync still runs in it.
		electCtx, stopElecting := context.WithCancel(ctx)
		defer stopElecting()
		runErr = elector.Run(electCtx, func(leadCtx context.Context) {
			err := d.Run(leadCtx, ctx.Done())
			switch {
			case errors.Is(err, daemon.ErrSyncWedged):
				leadErr = err
				stopElecting()
			case err != nil && ctx.Err() != nil:
				leadErr = err // a graceful stop that timed out
			}
		})
		runErr = errors.Join(runErr, leadErr)
	}()

	select {
	case <-done:
	case err := <-srvErr:
		// The server failed on its own: stop like on a signal would, but
		// report it.
		log.Error("HTTP server failed", "error", err.Error())
		return &exitError{code: exitFailed, err: fmt.Errorf("run: http: %w", err)}
	}
	log.Info("Stopped syncing; shutting down the HTTP server")
	stopServer()
	if err := <-srvErr; err != nil {
		log.Warn("HTTP server shutdown", "error", err.Error())
	}
	wedged = errors.Is(runErr, daemon.ErrSyncWedged)
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return &exitError{code: exitFailed, err: fmt.Errorf("run: %w", runErr)}
	}
	log.Info("fleetd run stopped")
	return nil
}

func enabledHooks(gh, gl, sync []byte) string {
	var on []string
	for _, h := range []struct {
		name   string
		secret []byte
	}{{"github", gh}, {"gitlab", gl}, {"sync", sync}} {
		if len(h.secret) > 0 {
			on = append(on, h.name)
		}
	}
	if len(on) == 0 {
		return "none"
	}
	return strings.Join(on, ",")
}

// redactURL hides a password or token written into the repo URL
// (https://user:token@host/...), so it never reaches the log.
func redactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	at := strings.LastIndex(rest, "@")
	slash := strings.Index(rest, "/")
	if at < 0 || (slash >= 0 && at > slash) {
		return s
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return s
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
