package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// serveEnv serves e's handler on 127.0.0.1 through Serve, the daemon's own
// http.Server with its timeouts and connection limit.
func serveEnv(t *testing.T, mut func(*Config)) (*env, string) {
	t.Helper()
	e := newEnv(t, mut)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e, ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reads c until the server closes it, failing if that takes
// longer than the test is willing to wait (a generous bound, not a
// performance figure).
func closedByServer(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open; read %q", b)
	}
	return b
}

func TestSlowLorisSocketsAreClosed(t *testing.T) {
	_, addr := serveEnv(t, func(c *Config) {
		c.ReadHeaderTimeout, c.ReadTimeout = 200*time.Millisecond, 500*time.Millisecond
	})
	t.Run("headers that never end", func(t *testing.T) {
		c := dial(t, addr)
		if _, err := io.WriteString(c, "POST /hooks/github HTTP/1.1\r\nHost: fleetd\r\nX-GitHub-Event: push\r\n"); err != nil {
			t.Fatal(err)
		}
		closedByServer(t, c)
	})
	t.Run("a body that never ends", func(t *testing.T) {
		c := dial(t, addr)
		sig := "sha256=" + strings.Repeat("ab", 32)
		if _, err := io.WriteString(c, "POST /hooks/github HTTP/1.1\r\nHost: fleetd\r\nX-GitHub-Event: push\r\n"+
			"X-Hub-Signature-256: "+sig+"\r\nContent-Length: 100000\r\n\r\n{\"ref\":"); err != nil {
			t.Fatal(err)
		}
		closedByServer(t, c)
	})
}

func TestConnectionsAreLimited(t *testing.T) {
	_, addr := serveEnv(t, func(c *Config) { c.MaxConns = 2 })
	a, b := dial(t, addr), dial(t, addr)
	_ = b
	// Both places are taken by connections that send nothing: a third is
	// not served until one of them goes.
	third := dial(t, addr)
	if _, err := io.WriteString(third, "GET /healthz HTTP/1.1\r\nHost: fleetd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := third.Read(make([]byte, 1)); n > 0 || err == nil {
		t.Fatal("a connection beyond MaxConns was served")
	}
	a.Close()
	_ = third.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil {
		t.Fatalf("the waiting connection was not served once a place was free: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz %d", resp.StatusCode)
	}
}

// blockingBody hands out size bytes of JSON-ish filler, then blocks until
// released, like a sender that stops before the end of its body. It records
// whether anything read it at all.
type blockingBody struct {
	size    int
	sent    int
	read    atomic.Bool
	reached chan struct{} // closed once all size bytes were read
	release chan struct{}
	once    sync.Once
}

func newBlockingBody(size int) *blockingBody {
	return &blockingBody{size: size, reached: make(chan struct{}), release: make(chan struct{})}
}

func (b *blockingBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	if b.sent < b.size {
		n := min(len(p), b.size-b.sent)
		for i := range n {
			p[i] = 'a'
		}
		b.sent += n
		return n, nil
	}
	b.once.Do(func() { close(b.reached) })
	<-b.release
	return 0, io.EOF
}

func githubRequest(body io.Reader, length int64, sig string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/hooks/github", body)
	r.ContentLength = length
	r.Header.Set("X-GitHub-Event", "push")
	r.Header.Set("X-Hub-Signature-256", sig)
	return r
}

func TestOverLimitRequestsGet503(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxInFlight = 2 })
	badSig := "sha256=" + strings.Repeat("00", 32)
	var slow []*blockingBody
	var wg sync.WaitGroup
	codes := make(chan int, 2)
	for range 2 {
		b := newBlockingBody(1000)
		slow = append(slow, b)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := httptest.NewRecorder()
			e.srv.ServeHTTP(w, githubRequest(b, 2000, badSig))
			codes <- w.Code
		}()
		<-b.reached
	}
	// Both slots hold a body that is still arriving: the next requests are
	// answered at once, without a byte of their bodies read.
	for _, r := range []*http.Request{
		githubRequest(nil, 0, badSig),
		func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/hooks/gitlab", nil)
			r.Header.Set("X-Gitlab-Token", glToken)
			return r
		}(),
	} {
		body := newBlockingBody(10)
		r.Body = io.NopCloser(body)
		w := httptest.NewRecorder()
		e.srv.ServeHTTP(w, r)
		if w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s over the limit: %d, want 503", r.URL.Path, w.Code)
		}
		if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra <= 0 {
			t.Errorf("Retry-After %q", w.Header().Get("Retry-After"))
		}
		if w.Header().Get("Connection") != "close" {
			t.Error("a refused request's connection is kept, and net/http would read its body")
		}
		if body.read.Load() {
			t.Error("the body of a request over the limit was read")
		}
	}
	for _, b := range slow {
		close(b.release)
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusUnauthorized {
			t.Errorf("slow bad signature: %d, want 401", c)
		}
	}
	// The slots are free again.
	body := ghPush("refs/heads/main")
	if w := e.do(github("push", "d9", body, sign(body, ghSecret))); w.Code != http.StatusAccepted {
		t.Errorf("after the slow requests: %d, want 202", w.Code)
	}
	if got := webhookCount(t, e.m, "github", "over_limit"); got != 1 {
		t.Errorf("over_limit counted %v, want 1", got)
	}
}

func TestBadGitLabTokenIsAnsweredBeforeTheBody(t *testing.T) {
	t.Run("handler", func(t *testing.T) {
		e := newEnv(t, nil)
		body := newBlockingBody(10)
		r := httptest.NewRequest(http.MethodPost, "/hooks/gitlab", nil)
		r.Body, r.ContentLength = io.NopCloser(body), 500_000
		r.Header.Set("X-Gitlab-Token", "wrong")
		w := httptest.NewRecorder()
		e.srv.ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized || body.read.Load() {
			t.Errorf("status %d, body read %v; want 401 with the body unread", w.Code, body.read.Load())
		}
	})
	t.Run("server", func(t *testing.T) {
		// Through the real server: the body is announced and never sent.
		// Answered at once, and closed: net/http would otherwise wait to
		// read up to 256 KiB of it to keep the connection.
		_, addr := serveEnv(t, nil)
		c := dial(t, addr)
		if _, err := io.WriteString(c, "POST /hooks/gitlab HTTP/1.1\r\nHost: fleetd\r\nX-Gitlab-Token: wrong\r\n"+
			"X-Gitlab-Event: Push Hook\r\nContent-Length: 500000\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer before the body: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
			t.Errorf("status %d, close %v; want 401 and the connection closed", resp.StatusCode, resp.Close)
		}
		closedByServer(t, c)
	})
}

// TestBadSignaturesDoNotHoldBodies sends 64 GitHub requests with a bad
// signature at once, each with a 900 KiB body that stops short of its
// announced length, as slow senders do. Only MaxInFlight of them are read;
// the rest are refused unread, so the heap holds about MaxInFlight bodies,
// not 64 (it held all of them, some 60 MiB, before the limit). When they
// end, nothing of them stays.
func TestBadSignaturesDoNotHoldBodies(t *testing.T) {
	const (
		requests = 64
		size     = 900 << 10
	)
	e := newEnv(t, nil)
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()
	badSig := sign([]byte("another body"), ghSecret)
	var wg sync.WaitGroup
	bodies := make([]*blockingBody, requests)
	codes := make([]chan int, requests)
	for i := range requests {
		b := newBlockingBody(size)
		bodies[i], codes[i] = b, make(chan int, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := httptest.NewRecorder()
			e.srv.ServeHTTP(w, githubRequest(b, size+1, badSig))
			codes[i] <- w.Code
		}()
	}
	// Every request is either refused or blocked at the end of its body.
	refused, reading := 0, map[int]bool{}
	for i, b := range bodies {
		select {
		case <-b.reached:
			reading[i] = true
		case c := <-codes[i]:
			refused++
			if c != http.StatusServiceUnavailable {
				t.Errorf("refused with %d, want 503", c)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a request neither read nor refused")
		}
	}
	if len(reading) != DefaultMaxInFlight {
		t.Errorf("%d bodies read at once, want %d", len(reading), DefaultMaxInFlight)
	}
	held := heap() - before
	limit := int64(DefaultMaxInFlight*DefaultMaxBody) + 8<<20
	t.Logf("%d slow bad-signature bodies of %d KiB: %d refused unread, heap +%.1f MiB", requests, size>>10, refused, float64(held)/(1<<20))
	if held > limit {
		t.Errorf("heap grew by %.1f MiB with %d slow requests, want at most %.1f MiB (the in-flight slots)", float64(held)/(1<<20), requests, float64(limit)/(1<<20))
	}
	for _, b := range bodies {
		close(b.release)
	}
	wg.Wait()
	for i := range reading {
		if c := <-codes[i]; c != http.StatusUnauthorized {
			t.Errorf("slow bad signature: %d, want 401", c)
		}
	}
	if after := heap() - before; after > 4<<20 {
		t.Errorf("heap still %.1f MiB above the start once the requests ended", float64(after)/(1<<20))
	}
}

func TestRefusedWebhooksAreLoggedOncePerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil)
		lines := func() []map[string]any {
			var out []map[string]any
			for l := range strings.SplitSeq(strings.TrimSpace(e.logs.String()), "\n") {
				var m map[string]any
				if l != "" && json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "Refused webhook requests" {
					out = append(out, m)
				}
			}
			return out
		}
		body := ghPush("refs/heads/main")
		bad := github("push", "", body, sign(body, "wrong"))
		other := github("push", "", ghPush("refs/heads/fleet-status"), sign(ghPush("refs/heads/fleet-status"), ghSecret))
		// The first refusal is logged at once: a wrong secret shows at the
		// first delivery.
		e.do(bad)
		if n := len(lines()); n != 1 {
			t.Fatalf("%d lines after the first refusal, want 1:\n%s", n, e.logs)
		}
		for range 300 {
			e.do(bad)
		}
		for range 20 {
			e.do(gitlab("Push Hook", "wrong", glPush("refs/heads/main")))
			e.do(other)
		}
		if n := len(lines()); n != 1 {
			t.Fatalf("%d lines within the interval, want 1", n)
		}
		time.Sleep(DefaultRefusalLogInterval)
		synctest.Wait()
		ls := lines()
		if len(ls) != 2 {
			t.Fatalf("%d lines after the interval, want 2:\n%s", len(ls), e.logs)
		}
		sum := ls[1]
		if sum["count"] != float64(340) || sum["level"] != "WARN" {
			t.Errorf("summary %v, want a WARN of 340 refusals", sum)
		}
		want := map[string]any{"github/unauthorized": float64(300), "gitlab/unauthorized": float64(20), "github/wrong_branch": float64(20)}
		got, _ := sum["by_reason"].(map[string]any)
		for k, v := range want {
			if got[k] != v {
				t.Errorf("by_reason[%s] = %v, want %v (all: %v)", k, got[k], v, got)
			}
		}
		// A quiet interval logs nothing; the next refusal is logged at once.
		time.Sleep(10 * DefaultRefusalLogInterval)
		synctest.Wait()
		if n := len(lines()); n != 2 {
			t.Errorf("%d lines after a quiet interval, want 2", n)
		}
		e.do(bad)
		if n := len(lines()); n != 3 {
			t.Errorf("%d lines after a refusal following a quiet interval, want 3", n)
		}
		if strings.Contains(e.logs.String(), ghSecret) || strings.Contains(e.logs.String(), glToken) {
			t.Error("a secret reached the log")
		}
		if n := strings.Count(e.logs.String(), `"msg":"Webhook"`); n != 0 {
			t.Errorf("%d per-request lines for refused webhooks", n)
		}
		for _, c := range []struct {
			source, reason string
			want           float64
		}{{"github", "unauthorized", 302}, {"gitlab", "unauthorized", 20}, {"github", "wrong_branch", 20}} {
			if got := refusedCount(t, e, c.source, c.reason); got != c.want {
				t.Errorf("fleetd_webhook_refused_total{source=%q,reason=%q} = %v, want %v", c.source, c.reason, got, c.want)
			}
		}
	})
}

func refusedCount(t *testing.T, e *env, source, reason string) float64 {
	t.Helper()
	w := httptest.NewRecorder()
	e.m.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	prefix := []byte(`fleetd_webhook_refused_total{reason="` + reason + `",source="` + source + `"} `)
	for l := range bytes.SplitSeq(w.Body.Bytes(), []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, prefix); ok {
			f, _ := strconv.ParseFloat(string(v), 64)
			return f
		}
	}
	return 0
}
