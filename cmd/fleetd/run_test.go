package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleetd/fleetd/internal/daemon"
	"github.com/fleetd/fleetd/internal/fleetsync"
	"github.com/fleetd/fleetd/internal/metrics"
	"github.com/fleetd/fleetd/internal/testenv/kubetest"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

func TestApplyEnv(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string // poll-interval afterwards
		wantErr string
	}{
		{"default", nil, nil, "1m0s", ""},
		{"environment sets an unset flag", nil, map[string]string{"FLEETD_POLL_INTERVAL": "90s"}, "1m30s", ""},
		{"an explicit flag wins over the environment", []string{"--poll-interval=2m"}, map[string]string{"FLEETD_POLL_INTERVAL": "90s"}, "2m0s", ""},
		{"a bad value names its variable", nil, map[string]string{"FLEETD_POLL_INTERVAL": "soon"}, "", "FLEETD_POLL_INTERVAL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
			poll := fs.Duration("poll-interval", time.Minute, "")
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			err := applyEnv(fs, func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil || poll.String() != c.want {
				t.Fatalf("poll %s, err %v; want %s", poll, err, c.want)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://oauth2:glpat-secret@gitlab.example/platform/fleet.git": "https://oauth2:xxxxx@gitlab.example/platform/fleet.git",
		"https://gitlab.example/platform/fleet.git":                     "https://gitlab.example/platform/fleet.git",
		"ssh://git@gitlab.example/platform/fleet.git":                   "ssh://git@gitlab.example/platform/fleet.git",
		"git@github.com:acme/fleet.git":                                 "git@github.com:acme/fleet.git",
		"/srv/git/fleet.git":                                            "/srv/git/fleet.git",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// fakeSyncer stands in for the sync loop. Each sync takes the next outcome
// from a channel when block is set, else returns a success at once.
type fakeSyncer struct {
	cfg      RunConfig
	calls    atomic.Int32
	inFlight atomic.Int32
	overlap  atomic.Bool
	block    chan daemon.Outcome // nil: never block
	started  chan int32
	canceled atomic.Bool
}

func (f *fakeSyncer) Sync(ctx context.Context) daemon.Outcome {
	if f.inFlight.Add(1) > 1 {
		f.overlap.Store(true)
	}
	defer f.inFlight.Add(-1)
	n := f.calls.Add(1)
	select {
	case f.started <- n:
	default:
	}
	if f.block != nil && n > 1 {
		select {
		case o := <-f.block:
			return o
		case <-ctx.Done():
			f.canceled.Store(true)
			return daemon.Outcome{Err: ctx.Err()}
		}
	}
	return daemon.Outcome{Revision: fmt.Sprintf("rev%d", n), FetchedAt: time.Now(), FetchDuration: time.Millisecond,
		ClusterStates: []daemon.ClusterState{{Team: "qa", Cluster: "a", Phase: "Ready"}, {Team: "qa", Cluster: "b", Phase: "Ready"}}}
}

// startRun runs `fleetd run args` with fake as the sync loop and returns the
// server's address and a function that waits for the exit code.
func startRun(t *testing.T, ctx context.Context, fake *fakeSyncer, args ...string) (string, func() int, *logbuf.Buffer) {
	t.Helper()
	addrc := make(chan net.Addr, 1)
	wr := liveWiring()
	wr.onListen = func(a net.Addr) { addrc <- a }
	wr.syncer = func(_ context.Context, cfg RunConfig, m *metrics.Metrics, _ *slog.Logger, _ fleetsync.WorldFunc) (daemon.Syncer, error) {
		if m == nil {
			return nil, fmt.Errorf("no metrics")
		}
		fake.cfg = cfg
		return fake, nil
	}
	stderr := &logbuf.Buffer{}
	code := make(chan int, 1)
	go func() { code <- runWith(ctx, wr, append([]string{"run"}, args...), io.Discard, stderr) }()
	select {
	case a := <-addrc:
		return a.String(), func() int {
			select {
			case c := <-code:
				return c
			case <-time.After(20 * time.Second):
				t.Fatal("fleetd run did not exit")
				return -1
			}
		}, stderr
	case c := <-code:
		t.Fatalf("fleetd run exited with %d before listening: %s", c, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("fleetd run did not listen")
	}
	return "", nil, nil
}

func writeTempFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func signedPush(t *testing.T, addr, secret, ref, delivery string) int {
	t.Helper()
	body := `{"ref":"` + ref + `","after":"abc","repository":{"full_name":"acme/fleet"}}`
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/hooks/github", strings.NewReader(body))
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const testSecret = "s3cret-for-the-test"

func TestRunWebhookTriggersASync(t *testing.T) {
	secret := writeTempFile(t, "gh", testSecret+"\n")
	t.Setenv("FLEETD_BRANCH", "fleet")
	t.Setenv("FLEETD_DRY_RUN", "true")
	t.Setenv("FLEETD_CONCURRENCY", "3")
	t.Setenv("FLEETD_POLL_INTERVAL", "1s") // the flag below wins
	t.Setenv("FLEETD_GITHUB_WEBHOOK_SECRET_FILE", secret)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fake := &fakeSyncer{started: make(chan int32, 10)}
	addr, wait, logs := startRun(t, ctx, fake, "--repo", "https://oauth2:tok3n@git.example/fleet.git",
		"--listen", "127.0.0.1:0", "--poll-interval", "1h", "--work-dir", t.TempDir())

	waitFor(t, "the first sync", func() bool { return fake.calls.Load() >= 1 })
	if c := fake.cfg; c.Branch != "fleet" || !c.DryRun || c.Concurrency != 3 || c.PollInterval != time.Hour ||
		c.RepoURL != "https://oauth2:tok3n@git.example/fleet.git" {
		t.Errorf("RunConfig %+v", c)
	}
	waitFor(t, "readiness", func() bool { c, _ := get(t, "http://"+addr+"/readyz"); return c == 200 })

	if c := signedPush(t, addr, testSecret, "refs/heads/main", "d1"); c != 200 {
		t.Errorf("push to main (not tracked): %d, want 200", c)
	}
	if c := signedPush(t, addr, "wrong", "refs/heads/fleet", "d2"); c != 401 {
		t.Errorf("badly signed push: %d, want 401", c)
	}
	if c := signedPush(t, addr, testSecret, "refs/heads/fleet", "d3"); c != 202 {
		t.Errorf("push to the tracked branch: %d, want 202", c)
	}
	waitFor(t, "the webhook's sync", func() bool { return fake.calls.Load() == 2 })
	time.Sleep(100 * time.Millisecond)
	if n := fake.calls.Load(); n != 2 {
		t.Errorf("%d syncs, want 2 (start and the one webhook)", n)
	}
	if c, _ := get(t, "http://"+addr+"/hooks/gitlab"); c != 404 {
		t.Errorf("unconfigured GitLab route: %d, want 404", c)
	}
	_, body := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`fleetd_syncs_total{result="success"} 2`,
		`fleetd_webhook_requests_total{result="accepted",source="github"} 1`,
		`fleetd_webhook_requests_total{result="unauthorized",source="github"} 1`,
		`fleetd_webhook_requests_total{result="ignored",source="github"} 1`,
		`fleetd_webhook_refused_total{reason="unauthorized",source="github"} 1`,
		`fleetd_webhook_refused_total{reason="wrong_branch",source="github"} 1`,
		`fleetd_clusters{phase="Ready"} 2`,
		`fleetd_leader 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cancel()
	if code := wait(); code != 0 {
		t.Errorf("exit %d, want 0; log:\n%s", code, logs)
	}
	// The log is JSON, line by line, and holds no secret.
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	lines := 0
	for sc.Scan() {
		lines++
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("log line is not JSON: %s", sc.Text())
		}
	}
	if lines < 4 {
		t.Errorf("only %d log lines", lines)
	}
	// The two refusals (a bad signature, another branch) make one summary
	// line at most per minute: the first at once, the second at the stop.
	if n := strings.Count(logs.String(), `"msg":"Refused webhook requests"`); n < 1 || n > 2 {
		t.Errorf("%d refusal summaries, want 1 or 2:\n%s", n, logs)
	}
	for _, s := range []string{testSecret, "tok3n"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the secret %q reached the log", s)
		}
	}
}

func TestRunStopLetsTheSyncInFlightFinish(t *testing.T) {
	tok := writeTempFile(t, "tok", "sync-token")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fake := &fakeSyncer{started: make(chan int32, 10), block: make(chan daemon.Outcome)}
	addr, wait, logs := startRun(t, ctx, fake, "--repo", "/srv/fleet.git", "--listen", "127.0.0.1:0",
		"--sync-token-file", tok, "--log-format", "text", "--work-dir", t.TempDir())
	waitFor(t, "the first sync", func() bool { return fake.calls.Load() >= 1 })

	post := func() int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/hooks/sync", nil)
		req.Header.Set("Authorization", "Bearer sync-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(); c != 202 {
		t.Fatalf("POST /hooks/sync: %d", c)
	}
	waitFor(t, "the requested sync to start", func() bool { return fake.calls.Load() == 2 })
	post() // queued behind the one in flight

	cancel() // SIGTERM
	exited := make(chan int, 1)
	go func() { exited <- wait() }()
	// While the sync finishes, the server still answers: not ready, and
	// webhooks are refused so their senders retry elsewhere.
	waitFor(t, "readiness to drop", func() bool { c, _ := get(t, "http://"+addr+"/readyz"); return c == 503 })
	if c := post(); c != http.StatusServiceUnavailable {
		t.Errorf("webhook while stopping: %d, want 503", c)
	}
	select {
	case c := <-exited:
		t.Fatalf("exited with %d before the sync in flight finished", c)
	case <-time.After(200 * time.Millisecond):
	}
	fake.block <- daemon.Outcome{Revision: "done", FetchedAt: time.Now()}
	if c := <-exited; c != 0 {
		t.Errorf("exit %d, want 0; log:\n%s", c, logs)
	}
	if fake.canceled.Load() {
		t.Error("the sync in flight was cancelled")
	}
	if n := fake.calls.Load(); n != 2 {
		t.Errorf("%d syncs, want 2: the queued one must not run after SIGTERM", n)
	}
	if fake.overlap.Load() {
		t.Error("two syncs ran at once")
	}
	if !strings.Contains(logs.String(), "fleetd run stopped") {
		t.Errorf("no stop line in the text log:\n%s", logs)
	}
}

func TestRunStopTimeoutCancelsTheSync(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fake := &fakeSyncer{started: make(chan int32, 10), block: make(chan daemon.Outcome)}
	tok := writeTempFile(t, "tok", "t")
	addr, wait, _ := startRun(t, ctx, fake, "--repo", "/srv/fleet.git", "--listen", "127.0.0.1:0",
		"--sync-token-file", tok, "--shutdown-timeout", "200ms", "--work-dir", t.TempDir())
	waitFor(t, "the first sync", func() bool { return fake.calls.Load() >= 1 })
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/hooks/sync", nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, "the second sync", func() bool { return fake.calls.Load() == 2 })
	t0 := time.Now()
	cancel()
	if c := wait(); c != 0 {
		t.Errorf("exit %d: a sync that returns after its cancel is a clean stop", c)
	}
	if el := time.Since(t0); el < 200*time.Millisecond || el > 10*time.Second {
		t.Errorf("stopped after %v, want the 200ms timeout", el)
	}
	if !fake.canceled.Load() {
		t.Error("the sync was not cancelled after the timeout")
	}
}

func TestRunUsageErrors(t *testing.T) {
	empty := writeTempFile(t, "empty", " \n")
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no repo", nil, nil, "--repo"},
		{"bad log format", []string{"--repo", "x", "--log-format", "xml"}, nil, "--log-format"},
		{"both auth kinds", []string{"--repo", "x", "--https-token-file", "a", "--ssh-key-file", "b"}, nil, "exclude"},
		{"zero concurrency", []string{"--repo", "x", "--concurrency", "0"}, nil, "--concurrency"},
		{"tiny poll", []string{"--repo", "x", "--poll-interval", "10ms"}, nil, "--poll-interval"},
		{"empty secret", []string{"--repo", "x", "--listen", "127.0.0.1:0", "--github-webhook-secret-file", empty}, nil, "empty"},
		{"missing secret file", []string{"--repo", "x", "--listen", "127.0.0.1:0", "--gitlab-webhook-token-file", "/nonexistent/t"}, nil, "gitlab-webhook-token-file"},
		{"bad env value", []string{"--repo", "x"}, map[string]string{"FLEETD_DRY_RUN": "perhaps"}, "FLEETD_DRY_RUN"},
		{"unknown flag", []string{"--repo", "x", "--frobnicate"}, nil, "unknown flag"},
		{"no connections", []string{"--repo", "x", "--max-connections", "0"}, nil, "--max-connections"},
		{"too many webhooks in flight", []string{"--repo", "x", "--webhook-max-in-flight", "1000"}, nil, "--webhook-max-in-flight"},
		{"election outside a cluster without kubeconfig", []string{"--repo", "x", "--leader-elect", "--listen", "127.0.0.1:0"}, nil, "--kubeconfig"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			wr := liveWiring()
			wr.syncer = func(context.Context, RunConfig, *metrics.Metrics, *slog.Logger, fleetsync.WorldFunc) (daemon.Syncer, error) {
				return &fakeSyncer{}, nil
			}
			var stderr bytes.Buffer
			code := runWith(context.Background(), wr, append([]string{"run"}, c.args...), io.Discard, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), c.want) {
				t.Errorf("exit %d, stderr %q; want %d mentioning %q", code, stderr.String(), exitUsage, c.want)
			}
		})
	}
}

// startAPIServer starts a test kube-apiserver for one test, or skips the
// test when its binaries are not there (and FLEETD_KUBE_REQUIRE is not 1).
func startAPIServer(t *testing.T, opts kubetest.Options) *kubetest.Env {
	t.Helper()
	assets, err := kubetest.FindAssets()
	if err != nil {
		if kubetest.Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	opts.AssetsDir = assets
	env, err := kubetest.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Stop)
	return env
}

// TestRunLeaderElection runs two `fleetd run --leader-elect` on a real
// kube-apiserver: one leads, syncs and answers ready; the other waits and is
// not ready; SIGTERM to the leader releases the Lease and the other takes
// over within 15 s, and the two never sync at once.
func TestRunLeaderElection(t *testing.T) {
	env := startAPIServer(t, kubetest.Options{SkipCRDs: true})

	// Two replicas in one process: the sync loop is chosen by --repo, and
	// the ports are picked beforehand.
	var syncing atomic.Int32
	var overlap atomic.Bool
	fakes := map[string]*fakeSyncer{"/srv/a.git": {started: make(chan int32, 100)}, "/srv/b.git": {started: make(chan int32, 100)}}
	wr := liveWiring()
	wr.syncer = func(_ context.Context, cfg RunConfig, _ *metrics.Metrics, _ *slog.Logger, _ fleetsync.WorldFunc) (daemon.Syncer, error) {
		f := fakes[cfg.RepoURL]
		return daemon.SyncerFunc(func(ctx context.Context) daemon.Outcome {
			if syncing.Add(1) > 1 {
				overlap.Store(true)
			}
			defer syncing.Add(-1)
			time.Sleep(20 * time.Millisecond)
			return f.Sync(ctx)
		}), nil
	}

	type rep struct {
		repo, addr string
		cancel     context.CancelFunc
		code       chan int
		logs       *logbuf.Buffer
	}
	start := func(repo string) *rep {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r := &rep{repo: repo, addr: ln.Addr().String(), code: make(chan int, 1), logs: &logbuf.Buffer{}}
		ln.Close()
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		go func() {
			r.code <- runWith(ctx, wr, []string{"run", "--repo", repo, "--listen", r.addr, "--work-dir", t.TempDir(),
				"--poll-interval", "1s", "--leader-elect", "--kubeconfig", env.KubeconfigPath,
				"--leader-elect-namespace", "default", "--leader-elect-name", "fleetd-run-test",
				"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s",
				"--leader-elect-retry-period", "250ms"}, io.Discard, r.logs)
		}()
		waitFor(t, repo+" to listen", func() bool {
			resp, err := http.Get("http://" + r.addr + "/healthz")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		})
		return r
	}
	a, b := start("/srv/a.git"), start("/srv/b.git")
	ready := func(r *rep) bool { c, _ := get(t, "http://"+r.addr+"/readyz"); return c == 200 }
	leading := func(r *rep) bool {
		_, body := get(t, "http://"+r.addr+"/metrics")
		return strings.Contains(body, "\nfleetd_leader 1\n")
	}
	waitFor(t, "a leader", func() bool { return leading(a) || leading(b) })
	leader, follower := a, b
	if leading(b) {
		leader, follower = b, a
	}
	waitFor(t, "the leader to be ready", func() bool { return ready(leader) })
	time.Sleep(500 * time.Millisecond)
	if leading(follower) {
		t.Fatal("both replicas lead")
	}
	// A follower is ready: healthy and able to take over, so a Deployment
	// of two replicas is fully available and can roll one pod at a time.
	if c, body := get(t, "http://"+follower.addr+"/readyz"); c != 200 || !strings.Contains(body, "follows") {
		t.Fatalf("the follower's /readyz: %d %q, want 200 saying it follows", c, body)
	}
	if fakes[follower.repo].calls.Load() != 0 {
		t.Fatal("the follower synced")
	}
	if fakes[leader.repo].calls.Load() == 0 {
		t.Fatal("the leader did not sync")
	}
	_, body := get(t, "http://"+follower.addr+"/metrics")
	if !strings.Contains(body, "fleetd_leader 0") {
		t.Error("the follower's fleetd_leader is not 0")
	}

	t0 := time.Now()
	leader.cancel() // SIGTERM
	if c := <-leader.code; c != 0 {
		t.Fatalf("the leader exited %d:\n%s", c, leader.logs)
	}
	waitFor(t, "the follower to lead", func() bool { return leading(follower) })
	if took := time.Since(t0); took > 15*time.Second {
		t.Errorf("failover took %v, want under 15s", took)
	} else {
		t.Logf("failover after SIGTERM took %v", took)
	}
	waitFor(t, "the new leader to sync", func() bool { return fakes[follower.repo].calls.Load() > 0 })
	follower.cancel()
	if c := <-follower.code; c != 0 {
		t.Errorf("the follower exited %d", c)
	}
	if overlap.Load() {
		t.Error("the two replicas synced at once")
	}
}
