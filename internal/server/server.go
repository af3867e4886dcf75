package server

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/fleetd/fleetd/internal/daemon"
	"github.com/fleetd/fleetd/internal/metrics"
)

// Defaults of Config.
const (
	// DefaultMaxBody fits GitHub's and GitLab's push payloads, which carry
	// at most 20 commits.
	DefaultMaxBody       = 1 << 20 // 1 MiB
	DefaultDeliveryTTL   = 24 * time.Hour
	DefaultMaxDeliveries = 100_000 // ~10 MiB at most
	// DefaultMaxInFlight webhook bodies read at once: with DefaultMaxBody,
	// unauthenticated senders can make fleetd hold at most 8 MiB of bodies
	// (about twice that in RSS, with the garbage collector's headroom). A
	// real sender's request takes milliseconds, so 8 at once is a burst
	// far beyond any repository's pushes.
	DefaultMaxInFlight = 8
	// DefaultMaxConns bounds open connections; each costs some 10 to 20 KiB
	// (a goroutine and its buffers) while its headers are read.
	DefaultMaxConns = 512
	// Timeouts of the HTTP server. A request's headers must arrive within
	// DefaultReadHeaderTimeout and the whole request within
	// DefaultReadTimeout (a 1 MiB body at 64 KiB/s), so a slow-loris socket
	// holds its connection and its webhook slot for that long at most.
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 20 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	defaultMaxHeaderBytes    = 64 << 10
)

// Webhook sources, the values of fleetd_webhook_requests_total's source label.
const (
	SourceGitLab = "gitlab"
	SourceGitHub = "github"
	SourceSync   = "sync"
)

// Triggerer queues a sync; *daemon.Daemon is one. Trigger must not block.
type Triggerer interface {
	Trigger(reason string) (queued bool, err error)
}

// Config configures the HTTP handlers. A webhook route whose secret is nil
// answers 404, so an endpoint nobody configured is not there at all.
type Config struct {
	// Branch is the tracked branch; pushes to others are acknowledged and
	// ignored.
	Branch string
	// GitHubSecret is the secret of GitHub's X-Hub-Signature-256 HMAC.
	GitHubSecret []byte
	// GitLabToken is GitLab's X-Gitlab-Token.
	GitLabToken []byte
	// SyncToken is the bearer token of POST /hooks/sync.
	SyncToken []byte
	// Trigger queues syncs.
	Trigger Triggerer
	// Ready decides /readyz (see Readiness). Nil means always ready.
	Ready func() Readiness
	// Healthy decides /healthz: nil error is healthy; an error (syncs stopped
	// finishing) answers 503 so that a liveness probe restarts the process.
	// Nil means always healthy.
	Healthy func() error
	// Metrics, when set, counts webhooks and serves /metrics.
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// MaxBody bounds a webhook body (default 1 MiB): larger ones get 413.
	MaxBody int64
	// DeliveryTTL and MaxDeliveries bound the memory of GitHub delivery IDs
	// (defaults 24h and 100,000).
	DeliveryTTL   time.Duration
	MaxDeliveries int
	// Now defaults to time.Now.
	Now func() time.Time
	// MaxInFlight bounds the webhook requests whose bodies are read at once
	// (default 8); beyond it a request gets 503 with Retry-After, its body
	// unread. MaxInFlight × MaxBody bounds the memory that senders without
	// the secret can make fleetd hold.
	MaxInFlight int
	// MaxConns bounds the open connections of Serve (default 512); more wait
	// in the kernel's accept queue, costing fleetd nothing.
	MaxConns int
	// Timeouts of Serve's http.Server (defaults DefaultReadHeaderTimeout,
	// DefaultReadTimeout, DefaultWriteTimeout and DefaultIdleTimeout).
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// RefusalLogInterval is how often, at most, refused webhooks are logged
	// (default 1 min): one line sums up the interval's refusals by reason.
	RefusalLogInterval time.Duration
}

// Server is the daemon's HTTP handler.
type Server struct {
	cfg        Config
	log        *slog.Logger
	deliveries *deliveries
	slots      slots
	refusals   *refusalLog
	mux        *http.ServeMux
}

// New returns the handler for cfg.
func New(cfg Config) *Server {
	if cfg.Branch == "" {
		cfg.Branch = "main"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.DeliveryTTL <= 0 {
		cfg.DeliveryTTL = DefaultDeliveryTTL
	}
	if cfg.MaxDeliveries <= 0 {
		cfg.MaxDeliveries = DefaultMaxDeliveries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	cfg.ReadHeaderTimeout = cmp.Or(cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	cfg.ReadTimeout = cmp.Or(cfg.ReadTimeout, DefaultReadTimeout)
	cfg.WriteTimeout = cmp.Or(cfg.WriteTimeout, DefaultWriteTimeout)
	cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout)
	cfg.RefusalLogInterval = cmp.Or(cfg.RefusalLogInterval, DefaultRefusalLogInterval)
	s := &Server{cfg: cfg, log: cfg.Logger, deliveries: newDeliveries(cfg.DeliveryTTL, cfg.MaxDeliveries),
		slots: newSlots(cfg.MaxInFlight), refusals: newRefusalLog(cfg.Logger, cfg.RefusalLogInterval), mux: http.NewServeMux()}
	s.mux.HandleFunc("/hooks/gitlab", s.webhook(SourceGitLab, cfg.GitLabToken, s.gitlab))
	s.mux.HandleFunc("/hooks/github", s.webhook(SourceGitHub, cfg.GitHubSecret, s.github))
	s.mux.HandleFunc("/hooks/sync", s.webhook(SourceSync, cfg.SyncToken, s.sync))
	s.mux.HandleFunc("/healthz", s.healthz)
	s.mux.HandleFunc("/readyz", s.readyz)
	if cfg.Metrics != nil {
		s.mux.Handle("/metrics", cfg.Metrics.Handler())
	}
	return s
}

// ServeHTTP serves the routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Serve serves on ln until ctx is done, then shuts down gracefully within
// 5 seconds. It returns nil after a shutdown caused by ctx. At most
// MaxConns connections are open at once, and each is closed when its
// request's headers or whole request do not arrive within the timeouts.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    defaultMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	defer s.refusals.flush()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(newLimitListener(ln, s.cfg.MaxConns)) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// reply is the JSON body of every webhook answer.
type reply struct {
	Result  string `json:"result"`
	Message string `json:"message,omitempty"`
}

// verdict is how a webhook request ends: an HTTP status, a result for the
// metric and a message for the sender. The message never holds a secret.
type verdict struct {
	status  int
	result  string
	message string
	attrs   []any // for the log line
	// refused names why the request was refused (metrics.Refused*), ""
	// when it was taken or acknowledged. Refusals are counted by reason and
	// logged in a summary per interval, never one line each.
	refused string
	header  http.Header // extra response headers
}

// webhookFlags name the flag that turns each webhook on.
var webhookFlags = map[string]string{
	SourceGitLab: "--gitlab-webhook-token-file",
	SourceGitHub: "--github-webhook-secret-file",
	SourceSync:   "--sync-token-file",
}

// webhook wraps a handler with what every webhook route does: 404 when its
// secret is not configured, POST only, the body limit, metrics and the log:
// one line per request taken, a summary per interval of those refused.
func (s *Server) webhook(source string, secret []byte, h func(r *http.Request, secret []byte) verdict) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(secret) == 0 {
			// Not there at all, but say how to turn it on: a bare 404
			// sends people looking for a wrong URL.
			http.Error(w, fmt.Sprintf("404 page not found: the %s webhook is off; start fleetd run with %s to turn it on", source, webhookFlags[source]), http.StatusNotFound)
			return
		}
		var v verdict
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			v = verdict{status: http.StatusMethodNotAllowed, result: metrics.WebhookMethod, refused: metrics.RefusedBadMethod, message: "use POST"}
		} else if r.ContentLength > s.cfg.MaxBody {
			v = tooLarge(s.cfg.MaxBody)
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
			v = h(r, secret)
		}
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.Webhook(source, v.result)
			if v.refused != "" {
				s.cfg.Metrics.WebhookRefused(source, v.refused)
			}
		}
		if v.refused != "" {
			s.refusals.add(refusal{source: source, reason: v.refused, message: v.message, remote: r.RemoteAddr})
		} else {
			s.log.Info("Webhook", append([]any{"source", source, "result", v.result, "status", v.status, "remote", r.RemoteAddr}, v.attrs...)...)
		}
		if v.status >= 400 {
			// What is left of a refused request's body is never read:
			// without this net/http would read up to 256 KiB of it to keep
			// the connection, from a sender that may be sending it slowly.
			w.Header().Set("Connection", "close")
		}
		for k, vs := range v.header {
			w.Header()[k] = vs
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(v.status)
		_ = json.NewEncoder(w).Encode(reply{Result: v.result, Message: v.message})
	}
}

func tooLarge(limit int64) verdict {
	return verdict{status: http.StatusRequestEntityTooLarge, result: metrics.WebhookTooLarge, refused: metrics.RefusedTooLarge,
		message: fmt.Sprintf("body larger than %d bytes", limit)}
}

func unauthorized(msg string) verdict {
	return verdict{status: http.StatusUnauthorized, result: metrics.WebhookUnauthorized, refused: metrics.RefusedUnauthorized, message: msg}
}

func badRequest(msg string) verdict {
	return verdict{status: http.StatusBadRequest, result: metrics.WebhookBadRequest, refused: metrics.RefusedBadRequest, message: msg}
}

func ignored(msg string, attrs ...any) verdict {
	return verdict{status: http.StatusOK, result: metrics.WebhookIgnored, message: msg, attrs: attrs}
}

// equalSecret compares two secrets in constant time, their lengths
// included: both are hashed first, so the time taken says nothing about how
// much of a guess was right or how long the secret is.
func equalSecret(got string, want []byte) bool {
	g := sha256.Sum256([]byte(got))
	h := sha256.Sum256(want)
	return subtle.ConstantTimeCompare(g[:], h[:]) == 1
}

// trigger queues a sync for an authenticated request.
func (s *Server) trigger(reason, msg string, attrs ...any) verdict {
	queued, err := s.cfg.Trigger.Trigger(reason)
	if err != nil {
		return verdict{status: http.StatusServiceUnavailable, result: metrics.WebhookUnavailable, refused: metrics.RefusedStopping,
			message: "the daemon is stopping", attrs: attrs}
	}
	if !queued {
		msg += "; joined the sync already queued"
	}
	return verdict{status: http.StatusAccepted, result: metrics.WebhookAccepted, message: msg, attrs: append(attrs, "queued", queued)}
}

// pushVerdict triggers a sync for a push to the tracked branch and
// acknowledges any other push.
func (s *Server) pushVerdict(reason string, p Push, extra ...any) verdict {
	attrs := append([]any{"ref", p.Ref, "after", p.After, "repository", p.Repository}, extra...)
	if b, ok := p.Branch(); !ok || b != s.cfg.Branch {
		v := ignored(fmt.Sprintf("push to %s, not refs/heads/%s", p.Ref, s.cfg.Branch), attrs...)
		// Every status commit fleetd pushes to its own branch comes back as
		// one of these: summed up, not a line each.
		v.refused = metrics.RefusedWrongBranch
		return v
	}
	return s.trigger(reason, "sync queued", attrs...)
}

// gitlab handles POST /hooks/gitlab. The token is a header: a bad one is
// refused before a byte of the body is read.
func (s *Server) gitlab(r *http.Request, token []byte) verdict {
	got := r.Header.Get("X-Gitlab-Token")
	if got == "" {
		return unauthorized("missing X-Gitlab-Token")
	}
	if !equalSecret(got, token) {
		return unauthorized("bad X-Gitlab-Token")
	}
	body, release, v := s.body(r, nil)
	if v != nil {
		return *v
	}
	defer release()
	event := r.Header.Get("X-Gitlab-Event")
	if event != "" && event != "Push Hook" {
		return ignored("event " + event + " is not a push")
	}
	p, err := ParseGitLabPush(body)
	if errors.Is(err, errNotPush) {
		return ignored("not a push event")
	}
	if err != nil {
		return badRequest(err.Error())
	}
	return s.pushVerdict(daemon.ReasonWebhook, p, "event", event)
}

// github handles POST /hooks/github. The signature covers the body, so
// the body is read, into one of the bounded slots, and hashed as it
// arrives; a malformed signature is refused before that.
func (s *Server) github(r *http.Request, secret []byte) verdict {
	sig := r.Header.Get("X-Hub-Signature-256")
	if sig == "" {
		return unauthorized("missing X-Hub-Signature-256")
	}
	want, ok := parseSignature(sig)
	if !ok {
		return unauthorized("bad X-Hub-Signature-256")
	}
	mac := hmac.New(sha256.New, secret)
	body, release, v := s.body(r, mac)
	if v != nil {
		return *v
	}
	defer release()
	if !hmac.Equal(want, mac.Sum(nil)) {
		return unauthorized("bad X-Hub-Signature-256")
	}
	event := r.Header.Get("X-GitHub-Event")
	id := r.Header.Get("X-GitHub-Delivery")
	attrs := []any{"event", event, "delivery", id}
	if id != "" {
		if !s.deliveries.Add(id, s.cfg.Now()) {
			return verdict{status: http.StatusOK, result: metrics.WebhookDuplicate, message: "delivery " + id + " already handled", attrs: attrs}
		}
	}
	v2 := s.githubEvent(event, body, attrs)
	if id != "" && v2.status >= 300 {
		// Not handled: a redelivery of it must not be taken for a duplicate.
		s.deliveries.Forget(id)
	}
	return v2
}

func (s *Server) githubEvent(event string, body []byte, attrs []any) verdict {
	switch event {
	case "ping":
		p, err := ParseGitHubPing(body)
		if err != nil {
			return badRequest(err.Error())
		}
		return verdict{status: http.StatusOK, result: metrics.WebhookPing, message: "pong", attrs: append(attrs, "hook_id", p.HookID)}
	case "push":
		p, err := ParseGitHubPush(body)
		if err != nil {
			return badRequest(err.Error())
		}
		return s.pushVerdict(daemon.ReasonWebhook, p, attrs...)
	case "":
		return badRequest("missing X-GitHub-Event")
	default:
		return ignored("event "+event+" is not a push", attrs...)
	}
}

// parseSignature decodes GitHub's "sha256=<hex HMAC-SHA256 of the body>".
func parseSignature(header string) ([]byte, bool) {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return nil, false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return nil, false
	}
	return got, true
}

// sync handles POST /hooks/sync: an explicit sync, for operators and CI.
func (s *Server) sync(r *http.Request, token []byte) verdict {
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || got == "" {
		return unauthorized("missing bearer token")
	}
	if !equalSecret(strings.TrimSpace(got), token) {
		return unauthorized("bad bearer token")
	}
	// The body carries nothing; it is read (within the limit, by an
	// authenticated sender) so that the connection can be reused.
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge(s.cfg.MaxBody)
		}
		return badRequest("cannot read the body")
	}
	return s.trigger(daemon.ReasonExplicit, "sync queued")
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.cfg.Healthy != nil {
		if err := s.cfg.Healthy(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "unhealthy: "+err.Error()+"\n")
			return
		}
	}
	_, _ = io.WriteString(w, "ok\n")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var r Readiness
	if s.cfg.Ready != nil {
		r = s.cfg.Ready()
	}
	var b strings.Builder
	if r.Err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		b.WriteString("not ready: " + r.Err.Error() + "\n")
	} else {
		b.WriteString("ok\n")
	}
	for _, n := range r.Notes {
		b.WriteString("note: " + n + "\n")
	}
	_, _ = io.WriteString(w, b.String())
}
