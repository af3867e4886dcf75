package server

import (
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
	DefaultMaxBody       = 1 << 20 // 1 MiB
	DefaultDeliveryTTL   = 24 * time.Hour
	DefaultMaxDeliveries = 100_000 // ~10 MiB at most
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
	// Ready decides /readyz: nil error is ready. Nil means always ready.
	Ready func() error
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
}

// Server is the daemon's HTTP handler.
type Server struct {
	cfg        Config
	log        *slog.Logger
	deliveries *deliveries
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
	s := &Server{cfg: cfg, log: cfg.Logger, deliveries: newDeliveries(cfg.DeliveryTTL, cfg.MaxDeliveries), mux: http.NewServeMux()}
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
// 5 seconds. It returns nil after a shutdown caused by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
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
}

// webhook wraps a handler with what every webhook route does: 404 when its
// secret is not configured, POST only, the body limit, metrics and one log
// line per request.
func (s *Server) webhook(source string, secret []byte, h func(r *http.Request, secret []byte) verdict) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(secret) == 0 {
			http.NotFound(w, r)
			return
		}
		var v verdict
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			v = verdict{status: http.StatusMethodNotAllowed, result: metrics.WebhookMethod, message: "use POST"}
		} else if r.ContentLength > s.cfg.MaxBody {
			v = tooLarge(s.cfg.MaxBody)
		} else {
			r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
			v = h(r, secret)
		}
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.Webhook(source, v.result)
		}
		attrs := append([]any{"source", source, "result", v.result, "status", v.status, "remote", r.RemoteAddr}, v.attrs...)
		if v.status >= 400 {
			s.log.Warn("Webhook refused", append(attrs, "reason", v.message)...)
		} else {
			s.log.Info("Webhook", attrs...)
		}
		if v.status == http.StatusRequestEntityTooLarge {
			// The rest of the body is not read: close the connection rather
			// than drain up to the limit again.
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(v.status)
		_ = json.NewEncoder(w).Encode(reply{Result: v.result, Message: v.message})
	}
}

func tooLarge(limit int64) verdict {
	return verdict{status: http.StatusRequestEntityTooLarge, result: metrics.WebhookTooLarge,
		message: fmt.Sprintf("body larger than %d bytes", limit)}
}

func unauthorized(msg string) verdict {
	return verdict{status: http.StatusUnauthorized, result: metrics.WebhookUnauthorized, message: msg}
}

func badRequest(msg string) verdict {
	return verdict{status: http.StatusBadRequest, result: metrics.WebhookBadRequest, message: msg}
}

func ignored(msg string, attrs ...any) verdict {
	return verdict{status: http.StatusOK, result: metrics.WebhookIgnored, message: msg, attrs: attrs}
}

// readBody reads the body within the limit; a verdict is returned when it
// cannot be read.
func readBody(r *http.Request, limit int64) ([]byte, *verdict) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			v := tooLarge(limit)
			return nil, &v
		}
		v := badRequest("cannot read the body")
		return nil, &v
	}
	return body, nil
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
		return verdict{status: http.StatusServiceUnavailable, result: metrics.WebhookUnavailable, message: "the daemon is stopping", attrs: attrs}
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
		return ignored(fmt.Sprintf("push to %s, not refs/heads/%s", p.Ref, s.cfg.Branch), attrs...)
	}
	return s.trigger(reason, "sync queued", attrs...)
}

// gitlab handles POST /hooks/gitlab.
func (s *Server) gitlab(r *http.Request, token []byte) verdict {
	got := r.Header.Get("X-Gitlab-Token")
	if got == "" {
		return unauthorized("missing X-Gitlab-Token")
	}
	if !equalSecret(got, token) {
		return unauthorized("bad X-Gitlab-Token")
	}
	body, v := readBody(r, s.cfg.MaxBody)
	if v != nil {
		return *v
	}
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

// github handles POST /hooks/github.
func (s *Server) github(r *http.Request, secret []byte) verdict {
	sig := r.Header.Get("X-Hub-Signature-256")
	if sig == "" {
		return unauthorized("missing X-Hub-Signature-256")
	}
	body, v := readBody(r, s.cfg.MaxBody)
	if v != nil {
		return *v
	}
	if !validSignature(sig, body, secret) {
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

// validSignature checks GitHub's "sha256=<hex HMAC-SHA256 of the body>".
func validSignature(header string, body, secret []byte) bool {
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
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
	// The body carries nothing; it is read (within the limit) so that the
	// connection can be reused.
	if _, v := readBody(r, s.cfg.MaxBody); v != nil {
		return *v
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
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "not ready: "+err.Error()+"\n")
			return
		}
	}
	_, _ = io.WriteString(w, "ok\n")
}
