package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/daemon"
	"github.com/fleetd/fleetd/internal/metrics"
)

// BenchmarkWebhookToSync measures, over 200 signed GitHub push webhooks sent
// through a real HTTP server on 127.0.0.1, the time from sending a webhook
// to the daemon calling Syncer.Sync (a fake that returns at once), and
// compares it with a floor measured in the same run: the same HTTP round
// trip to a handler that only signals a channel. The sync loop's benchmark
// extends this to a real fleet.
func BenchmarkWebhookToSync(b *testing.B) {
	const webhooks = 200
	called := make(chan time.Time, 1)
	d := daemon.New(daemon.SyncerFunc(func(context.Context) daemon.Outcome {
		called <- time.Now()
		return daemon.Outcome{}
	}), daemon.Options{Schedule: daemon.Schedule{PollInterval: time.Hour}, Logger: slog.New(slog.DiscardHandler)})
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background(), stop) }()
	<-called // the start sync

	srv := New(Config{Branch: "main", GitHubSecret: []byte(ghSecret), Trigger: d, Metrics: metrics.New(),
		Logger: slog.New(slog.DiscardHandler)})
	addr, stopServe := serve(b, srv)
	defer stopServe()

	floorHit := make(chan time.Time, 1)
	floorAddr, stopFloor := serve(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		floorHit <- time.Now()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer stopFloor()

	body := ghPush("refs/heads/main")
	sig := sign(body, ghSecret)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	send := func(url string, i int, hit <-chan time.Time) time.Duration {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("bench-%d-%d", i, time.Now().UnixNano()))
		req.Header.Set("X-Hub-Signature-256", sig)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return (<-hit).Sub(t0)
	}

	var lat, floor []time.Duration
	for b.Loop() {
		for i := range webhooks {
			lat = append(lat, send("http://"+addr+"/hooks/github", i, called))
			floor = append(floor, send("http://"+floorAddr+"/", i, floorHit))
		}
	}
	close(stop)
	<-done
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	f50, f99 := percentile(floor, 50), percentile(floor, 99)
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
	b.ReportMetric(float64(f99.Microseconds()), "floor-p99-µs")
	b.ReportMetric(float64(p50)/float64(max(f50, 1)), "p50-ratio")
	b.ReportMetric(float64(p99)/float64(max(f99, 1)), "p99-ratio")
	b.ReportMetric(0, "ns/op")
	b.Logf("webhook -> Sync over %d webhooks: p50 %v p99 %v; floor (HTTP round trip to a bare handler) p50 %v p99 %v; ratio p50 %.2fx p99 %.2fx",
		len(lat), p50, p99, f50, f99, float64(p50)/float64(max(f50, 1)), float64(p99)/float64(max(f99, 1)))
}

func serve(b *testing.B, h http.Handler) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	return ln.Addr().String(), func() { _ = hs.Close() }
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}
