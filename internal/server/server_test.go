package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/daemon"
	"github.com/fleetd/fleetd/internal/metrics"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

const (
	ghSecret = "gh-s3cret-value"
	glToken  = "gl-t0ken-value"
	syncTok  = "sync-t0ken-value"
)

type fakeTrigger struct {
	mu       sync.Mutex
	reasons  []string
	stopping bool
}

func (f *fakeTrigger) Trigger(reason string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopping {
		return false, daemon.ErrStopping
	}
	f.reasons = append(f.reasons, reason)
	return len(f.reasons) == 1, nil
}

func (f *fakeTrigger) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reasons)
}

func sign(body []byte, secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func ghPush(ref string) []byte {
	return []byte(`{"ref":"` + ref + `","before":"1111111111111111111111111111111111111111","after":"2222222222222222222222222222222222222222","repository":{"full_name":"acme/fleet"},"pusher":{"name":"x"}}`)
}

func glPush(ref string) []byte {
	return []byte(`{"object_kind":"push","event_name":"push","ref":"` + ref + `","before":"1111111111111111111111111111111111111111","after":"2222222222222222222222222222222222222222","project":{"path_with_namespace":"platform/fleet"}}`)
}

type env struct {
	srv  *Server
	trig *fakeTrigger
	m    *metrics.Metrics
	logs *logbuf.Buffer
}

func newEnv(t testing.TB, mut func(*Config)) *env {
	t.Helper()
	e := &env{trig: &fakeTrigger{}, m: metrics.New(), logs: &logbuf.Buffer{}}
	cfg := Config{
		Branch:       "main",
		GitHubSecret: []byte(ghSecret),
		GitLabToken:  []byte(glToken),
		SyncToken:    []byte(syncTok),
		Trigger:      e.trig,
		Metrics:      e.m,
		Logger:       slog.New(slog.NewJSONHandler(e.logs, nil)),
	}
	if mut != nil {
		mut(&cfg)
	}
	e.srv = New(cfg)
	return e
}

type req struct {
	method  string
	path    string
	headers map[string]string
	body    []byte
}

func (e *env) do(r req) *httptest.ResponseRecorder {
	if r.method == "" {
		r.method = http.MethodPost
	}
	hr := httptest.NewRequest(r.method, r.path, bytes.NewReader(r.body))
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, hr)
	return w
}

func github(event, delivery string, body []byte, sig string) req {
	h := map[string]string{"X-GitHub-Event": event, "Content-Type": "application/json"}
	if delivery != "" {
		h["X-GitHub-Delivery"] = delivery
	}
	if sig != "" {
		h["X-Hub-Signature-256"] = sig
	}
	return req{path: "/hooks/github", headers: h, body: body}
}

func gitlab(event, token string, body []byte) req {
	h := map[string]string{"Content-Type": "application/json"}
	if event != "" {
		h["X-Gitlab-Event"] = event
	}
	if token != "" {
		h["X-Gitlab-Token"] = token
	}
	return req{path: "/hooks/gitlab", headers: h, body: body}
}

func TestWebhooks(t *testing.T) {
	big := append(append([]byte(`{"ref":"refs/heads/main","x":"`), bytes.Repeat([]byte("a"), DefaultMaxBody)...), '"', '}')
	cases := []struct {
		name     string
		r        req
		status   int
		triggers int
		result   string
		source   string
	}{
		{"github push to the tracked branch queues a sync", github("push", "d1", ghPush("refs/heads/main"), sign(ghPush("refs/heads/main"), ghSecret)), 202, 1, "accepted", "github"},
		{"github push to another branch is acknowledged", github("push", "d1", ghPush("refs/heads/feature"), sign(ghPush("refs/heads/feature"), ghSecret)), 200, 0, "ignored", "github"},
		{"github push of a tag is acknowledged", github("push", "d1", ghPush("refs/tags/main"), sign(ghPush("refs/tags/main"), ghSecret)), 200, 0, "ignored", "github"},
		{"github ping is answered", github("ping", "d1", []byte(`{"zen":"Keep it logically awesome.","hook_id":42}`), sign([]byte(`{"zen":"Keep it logically awesome.","hook_id":42}`), ghSecret)), 200, 0, "ping", "github"},
		{"github other events are acknowledged", github("issues", "d1", []byte(`{}`), sign([]byte(`{}`), ghSecret)), 200, 0, "ignored", "github"},
		{"github missing signature is refused", github("push", "d1", ghPush("refs/heads/main"), ""), 401, 0, "unauthorized", "github"},
		{"github wrong secret is refused", github("push", "d1", ghPush("refs/heads/main"), sign(ghPush("refs/heads/main"), "wrong")), 401, 0, "unauthorized", "github"},
		{"github signature of another body is refused", github("push", "d1", ghPush("refs/heads/main"), sign(ghPush("refs/heads/other"), ghSecret)), 401, 0, "unauthorized", "github"},
		{"github sha1 signature is refused", github("push", "d1", ghPush("refs/heads/main"), "sha1="+strings.Repeat("0", 40)), 401, 0, "unauthorized", "github"},
		{"github malformed hex signature is refused", github("push", "d1", ghPush("refs/heads/main"), "sha256=zz"), 401, 0, "unauthorized", "github"},
		{"github malformed JSON with a good signature is a bad request", github("push", "d1", []byte(`{"ref":`), sign([]byte(`{"ref":`), ghSecret)), 400, 0, "bad_request", "github"},
		{"github JSON of the wrong shape is a bad request", github("push", "d1", []byte(`{"ref":5}`), sign([]byte(`{"ref":5}`), ghSecret)), 400, 0, "bad_request", "github"},
		{"github body over 1 MiB is too large", github("push", "d1", big, sign(big, ghSecret)), 413, 0, "too_large", "github"},
		{"github without an event header is a bad request", github("", "d1", ghPush("refs/heads/main"), sign(ghPush("refs/heads/main"), ghSecret)), 400, 0, "bad_request", "github"},
		{"gitlab push to the tracked branch queues a sync", gitlab("Push Hook", glToken, glPush("refs/heads/main")), 202, 1, "accepted", "gitlab"},
		{"gitlab push to another branch is acknowledged", gitlab("Push Hook", glToken, glPush("refs/heads/dev")), 200, 0, "ignored", "gitlab"},
		{"gitlab tag push is acknowledged", gitlab("Tag Push Hook", glToken, []byte(`{"object_kind":"tag_push","ref":"refs/tags/v1"}`)), 200, 0, "ignored", "gitlab"},
		{"gitlab merge request event is acknowledged", gitlab("Merge Request Hook", glToken, []byte(`{"object_kind":"merge_request"}`)), 200, 0, "ignored", "gitlab"},
		{"gitlab missing token is refused", gitlab("Push Hook", "", glPush("refs/heads/main")), 401, 0, "unauthorized", "gitlab"},
		{"gitlab wrong token is refused", gitlab("Push Hook", "gl-t0ken-valuE", glPush("refs/heads/main")), 401, 0, "unauthorized", "gitlab"},
		{"gitlab token prefix is refused", gitlab("Push Hook", "gl-t0ken", glPush("refs/heads/main")), 401, 0, "unauthorized", "gitlab"},
		{"gitlab wrong token with a malformed body is refused before parsing", gitlab("Push Hook", "nope", []byte(`{{{`)), 401, 0, "unauthorized", "gitlab"},
		{"gitlab malformed JSON with a good token is a bad request", gitlab("Push Hook", glToken, []byte(`not json`)), 400, 0, "bad_request", "gitlab"},
		{"gitlab body over 1 MiB is too large", gitlab("Push Hook", glToken, big), 413, 0, "too_large", "gitlab"},
		{"explicit sync with the bearer token queues a sync", req{path: "/hooks/sync", headers: map[string]string{"Authorization": "Bearer " + syncTok}}, 202, 1, "accepted", "sync"},
		{"explicit sync without a token is refused", req{path: "/hooks/sync"}, 401, 0, "unauthorized", "sync"},
		{"explicit sync with a wrong token is refused", req{path: "/hooks/sync", headers: map[string]string{"Authorization": "Bearer x"}}, 401, 0, "unauthorized", "sync"},
		{"explicit sync with basic auth is refused", req{path: "/hooks/sync", headers: map[string]string{"Authorization": "Basic " + syncTok}}, 401, 0, "unauthorized", "sync"},
		{"GET on a webhook is not allowed", req{method: "GET", path: "/hooks/github"}, 405, 0, "bad_method", "github"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			w := e.do(c.r)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, c.status, w.Body)
			}
			if n := e.trig.count(); n != c.triggers {
				t.Errorf("%d triggers, want %d", n, c.triggers)
			}
			if got := webhookCount(t, e.m, c.source, c.result); got != 1 {
				t.Errorf("fleetd_webhook_requests_total{source=%q,result=%q} = %v, want 1", c.source, c.result, got)
			}
			for _, secret := range []string{ghSecret, glToken, syncTok} {
				if strings.Contains(e.logs.String(), secret) {
					t.Errorf("a secret reached the log: %s", e.logs)
				}
			}
		})
	}
}

// webhookCount reads fleetd_webhook_requests_total{source,result} from the
// registry, as a scrape would.
func webhookCount(t *testing.T, m *metrics.Metrics, source, result string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "fleetd_webhook_requests_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["source"] == source && labels["result"] == result {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestUnconfiguredRoutesAreNotFound(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.GitHubSecret, c.GitLabToken, c.SyncToken = nil, nil, nil })
	for _, r := range []req{
		github("push", "d", ghPush("refs/heads/main"), sign(ghPush("refs/heads/main"), "")),
		gitlab("Push Hook", "", glPush("refs/heads/main")),
		{path: "/hooks/sync", headers: map[string]string{"Authorization": "Bearer "}},
	} {
		w := e.do(r)
		if w.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", r.path, w.Code)
		}
		// The answer names the flag that turns the route on.
		if body := w.Body.String(); !strings.Contains(body, "start fleetd run with --") || !strings.Contains(body, "-file") {
			t.Errorf("%s: 404 body %q does not say how to turn the route on", r.path, body)
		}
	}
	if e.trig.count() != 0 {
		t.Error("an unconfigured route triggered a sync")
	}
}

func TestGitHubDeliveriesAreDeduplicated(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	e := newEnv(t, func(c *Config) { c.Now = func() time.Time { return now }; c.MaxDeliveries = 3 })
	body := ghPush("refs/heads/main")
	push := func(id string) int { return e.do(github("push", id, body, sign(body, ghSecret))).Code }

	if c := push("a"); c != 202 {
		t.Fatalf("first delivery: %d", c)
	}
	if c := push("a"); c != 200 || e.trig.count() != 1 {
		t.Fatalf("redelivery: status %d, %d triggers; want 200 and 1", c, e.trig.count())
	}
	// A forged redelivery (bad signature) is refused, not taken as a duplicate.
	if c := e.do(github("push", "a", body, sign(body, "x"))).Code; c != 401 {
		t.Errorf("forged redelivery: %d", c)
	}
	// After 24 hours the ID is forgotten.
	now = now.Add(24 * time.Hour)
	if c := push("a"); c != 202 {
		t.Errorf("delivery a day later: %d, want 202", c)
	}
	// Memory is bounded: the oldest IDs go first.
	for _, id := range []string{"b", "c", "d", "e"} {
		push(id)
	}
	if n := e.srv.deliveries.Len(); n != 3 {
		t.Errorf("%d IDs remembered, want at most 3", n)
	}
	if c := push("e"); c != 200 {
		t.Errorf("the newest ID was forgotten: %d", c)
	}
	if c := push("b"); c != 202 {
		t.Errorf("the oldest ID is still remembered: %d", c)
	}
	if got := webhookCount(t, e.m, "github", "duplicate"); got != 2 {
		t.Errorf("duplicates counted %v, want 2", got)
	}
}

func TestDeliveryNotHandledCanBeRedelivered(t *testing.T) {
	e := newEnv(t, nil)
	e.trig.stopping = true
	body := ghPush("refs/heads/main")
	if c := e.do(github("push", "z", body, sign(body, ghSecret))).Code; c != http.StatusServiceUnavailable {
		t.Fatalf("while stopping: %d, want 503", c)
	}
	e.trig.stopping = false
	if c := e.do(github("push", "z", body, sign(body, ghSecret))).Code; c != 202 {
		t.Fatalf("redelivery after a 503: %d, want 202", c)
	}
}

func TestWebhookBurstReachesTheDaemonOnce(t *testing.T) {
	// A real daemon behind the handler: a burst of webhooks while a sync
	// runs queues one more sync, never a second concurrent one.
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	d := daemon.New(daemon.SyncerFunc(func(ctx context.Context) daemon.Outcome {
		started <- struct{}{}
		<-release
		return daemon.Outcome{}
	}), daemon.Options{Schedule: daemon.Schedule{PollInterval: time.Hour}, Logger: slog.New(slog.DiscardHandler)})
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background(), stop) }()
	<-started
	// Room for the whole burst: this is about coalescing, not the
	// in-flight limit (TestOverLimitRequestsGet503 tests that).
	e := newEnv(t, func(c *Config) { c.Trigger, c.MaxInFlight = d, 64 })
	body := glPush("refs/heads/main")
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w := e.do(gitlab("Push Hook", glToken, body)); w.Code != 202 {
				t.Errorf("status %d", w.Code)
			}
		}()
	}
	wg.Wait()
	release <- struct{}{}
	<-started
	release <- struct{}{}
	select {
	case <-started:
		t.Fatal("a third sync ran: the burst did not coalesce")
	case <-time.After(200 * time.Millisecond):
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	var st daemon.Status
	leading, stopping := true, false
	check := ReadyCheck{
		PollInterval: time.Minute,
		Status:       func() daemon.Status { return st },
		Leading:      func() bool { return leading },
		Stopping:     func() bool { return stopping },
		Now:          func() time.Time { return now },
	}
	e := newEnv(t, func(c *Config) { c.Ready = check.Check })
	get := func(path string) (int, string) {
		w := e.do(req{method: "GET", path: path})
		return w.Code, w.Body.String()
	}
	if c, _ := get("/healthz"); c != 200 {
		t.Errorf("/healthz %d", c)
	}
	invalid := "fleet.yaml:4:3: providers[0].type: must be one of aws, vsphere"
	steps := []struct {
		name  string
		setup func()
		want  int
		why   []string
	}{
		{"not ready before the first fetch", func() {}, 503, []string{"no fetch of the fleet repo yet"}},
		{"not ready while the first fetch fails, and says why", func() { st.LastFetchError = "fetch: dial tcp: connection refused" },
			503, []string{"no successful fetch", "note: the last fetch of the fleet repo failed: fetch: dial tcp: connection refused"}},
		{"ready after a fresh fetch", func() { st = daemon.Status{LastFetchedAt: now.Add(-30 * time.Second), Revision: "0123456789abcdef"} }, 200, []string{"ok\n"}},
		{"ready within 3 poll intervals", func() { st.LastFetchedAt = now.Add(-179 * time.Second) }, 200, []string{"ok"}},
		// An invalid fleet.yaml fetches fine: ready, with the reason as a
		// note, so the webhook of the fixing commit still reaches the daemon.
		{"ready with an invalid fleet.yaml, which it names", func() { st.LastFetchedAt, st.LoadError = now.Add(-19*time.Second), invalid },
			200, []string{"ok\n", "note: revision 0123456789ab does not load", invalid}},
		{"ready while a fetch fails within 3 poll intervals", func() { st.LastFetchError = "fetch: timeout" }, 200, []string{"ok\n", "note: the last fetch of the fleet repo failed: fetch: timeout"}},
		{"not ready after 3 poll intervals of failed fetches", func() { st.LastFetchedAt = now.Add(-181 * time.Second) },
			503, []string{"3 poll intervals", "fetches fail", "fetch: timeout"}},
		{"not ready after 3 poll intervals without a fetch", func() { st.LastFetchError, st.LoadError = "", "" }, 503, []string{"no sync has fetched since"}},
		// A follower is ready (healthy, able to take over) though it never
		// fetches: the Deployment is fully available and rolls.
		{"ready when following, without a fetch", func() { st = daemon.Status{}; leading = false }, 200, []string{"ok\n", "note: this replica follows"}},
		{"not ready when stopping", func() { st.LastFetchedAt = now; leading = true; stopping = true }, 503, []string{"stopping"}},
	}
	for _, s := range steps {
		s.setup()
		c, body := get("/readyz")
		if c != s.want {
			t.Errorf("%s: %d %q, want %d", s.name, c, body, s.want)
		}
		for _, w := range s.why {
			if !strings.Contains(body, w) {
				t.Errorf("%s: body %q lacks %q", s.name, body, w)
			}
		}
	}
	// Election off: Leading is nil.
	check.Leading, stopping = nil, false
	if r := check.Check(); r.Err != nil {
		t.Errorf("election off: %v", r.Err)
	}
	if c, body := get("/metrics"); c != 200 || !strings.Contains(body, "fleetd_syncs_total") {
		t.Errorf("/metrics %d", c)
	}
}

func TestServeShutsDownWithTheContext(t *testing.T) {
	e := newEnv(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "ok\n" {
		t.Errorf("/healthz body %q", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/healthz"); err == nil {
		t.Error("still serving after shutdown")
	}
}
