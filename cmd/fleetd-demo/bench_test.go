package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/testenv/benchfleet"
	"github.com/fleetd/fleetd/internal/testenv/ec2test"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

// benchSizes returns the fleet sizes of BenchmarkDaemonWebhook:
// FLEETD_BENCH_CLUSTERS (a comma-separated list), 1,000 and 10,000 by
// default.
func benchSizes(b *testing.B) []int {
	s := os.Getenv("FLEETD_BENCH_CLUSTERS")
	if s == "" {
		return []int{1000, 10000}
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("FLEETD_BENCH_CLUSTERS=%q: %q is not a cluster count", s, f)
		}
		out = append(out, n)
	}
	return out
}

func benchGit(b *testing.B, dir string, args ...string) string {
	b.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=B", "-c", "user.email=b@example.com"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("git %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// resetHWM resets a process's peak resident set size to its current one
// (Linux: clear_refs 5), so vmHWM reports the peak from then on.
func resetHWM(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// vmHWM returns a process's peak resident set size in MiB.
func vmHWM(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkDaemonWebhook runs `fleetd run` (a separate process, as it runs
// in production) on converged fleets of 1,000 and 10,000 clusters (6.6
// machines each, running at the EC2 protocol server; FLEETD_BENCH_CLUSTERS
// picks other sizes) and times, over pushes that each change one cluster
// file (100 at 1,000 clusters, 40 above; FLEETD_BENCH_WEBHOOKS sets the
// number), the moment GitHub's signed webhook is sent to the moment the
// daemon's sync makes its first provider call (DescribeInstances). It
// reports p50 and p99, p99 against the 1 s target, and the daemon's peak
// RSS (targets 150 MiB at 1,000 clusters, 512 MiB at 10,000), and logs the
// webhooks slower than 500 ms with whether a pack compaction of the
// daemon's clone ran in their wait.
func BenchmarkDaemonWebhook(b *testing.B) {
	if _, err := exec.LookPath("git"); err != nil {
		b.Skip("git binary not installed")
	}
	bin := buildFleetdB(b)
	for _, n := range benchSizes(b) {
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			webhooks := 100
			if n > 1000 {
				// A sync of 10,000 clusters takes seconds (most of it the
				// SDK decoding 66,000 instances): 40 keep the run within
				// ten minutes on two cores.
				webhooks = 40
			}
			if s := os.Getenv("FLEETD_BENCH_WEBHOOKS"); s != "" {
				webhooks, _ = strconv.Atoi(s)
			}
			// A converged fleet: every machine already runs at the EC2
			// server under the name and tags fleetd gives it.
			ec2 := ec2test.New()
			defer ec2.Close()
			work := b.TempDir()
			fleet, err := benchfleet.WriteConverged(work, n)
			if err != nil {
				b.Fatal(err)
			}
			machines := benchfleet.SeedEC2(ec2, fleet)
			benchGit(b, work, "init", "-q", "-b", "main")
			benchGit(b, work, "add", "-A")
			benchGit(b, work, "commit", "-q", "-m", "fleet")
			remote := filepath.Join(b.TempDir(), "fleet.git")
			benchGit(b, work, "clone", "-q", "--bare", ".", remote)
			benchGit(b, work, "remote", "add", "origin", remote)

			var mu sync.Mutex
			var calls []time.Time
			ec2.OnCall("DescribeInstances", func(int) {
				mu.Lock()
				calls = append(calls, time.Now())
				mu.Unlock()
			})
			secret := "bench-secret"
			secretFile := filepath.Join(b.TempDir(), "secret")
			if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
				b.Fatal(err)
			}
			addr := freeAddrB(b)
			args := []string{"run", "--repo", remote, "--branch", "main", "--work-dir", b.TempDir(),
				"--listen", addr, "--poll-interval", "1h", "--github-webhook-secret-file", secretFile, "--log-format", "text"}
			cmd := exec.Command(bin, args...)
			var logs logbuf.Buffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			cmd.Env = append(os.Environ(), benchfleet.EC2Env(ec2)...)
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if dir := os.Getenv("FLEETD_BENCH_LOGS"); dir != "" {
					_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("daemon-%d.log", n)), []byte(logs.String()), 0o644)
				}
			}()
			statusHead := func() string {
				out, _ := exec.Command("git", "--git-dir", remote, "rev-parse", "-q", "--verify", "fleet-status").Output()
				return strings.TrimSpace(string(out))
			}
			waitStatus := func(old string) {
				for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					if h := statusHead(); h != "" && h != old {
						return
					}
				}
				b.Fatalf("no status commit; daemon log:\n%s", tail(logs.String(), 30))
			}
			firstSync := time.Now()
			waitStatus("")
			b.Logf("%d clusters, %d machines: first sync recorded status after %v", n, machines, time.Since(firstSync).Round(time.Millisecond))
			converged := func(when string) {
				if c := ec2.Calls("RunInstances") + ec2.Calls("TerminateInstances"); c != 0 {
					b.Fatalf("the fleet is not converged %s: %d RunInstances/TerminateInstances calls; daemon log:\n%s", when, c, tail(logs.String(), 30))
				}
			}
			converged("at the first sync")
			// The first sync clones, parses and writes every file: its peak
			// is reported apart from the peak while serving webhooks.
			firstRSS := vmHWM(cmd.Process.Pid)
			if !resetHWM(cmd.Process.Pid) {
				firstRSS = 0
			}

			type sample struct {
				lat       time.Duration
				compacted bool
			}
			var lat []time.Duration
			var samples []sample
			b.ResetTimer()
			for i := range webhooks {
				b.StopTimer()
				p := filepath.Join(work, "clusters", "team-0", "c00000.yaml")
				data, _ := os.ReadFile(p)
				data = []byte(strings.Replace(string(data), fmt.Sprintf("rev: \"%d\"", i), fmt.Sprintf("rev: \"%d\"", i+1), 1))
				if err := os.WriteFile(p, data, 0o644); err != nil {
					b.Fatal(err)
				}
				benchGit(b, work, "commit", "-q", "-am", "c00000: rev "+strconv.Itoa(i+1))
				benchGit(b, work, "push", "-q", "origin", "main")
				before := statusHead()
				mu.Lock()
				seen := len(calls)
				mu.Unlock()
				compactions := strings.Count(logs.String(), "Compacted pack files")
				body := `{"ref":"refs/heads/main","after":"` + benchGit(b, work, "rev-parse", "HEAD") + `"}`
				mac := hmac.New(sha256.New, []byte(secret))
				mac.Write([]byte(body))
				req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://"+addr+"/hooks/github", strings.NewReader(body))
				req.Header.Set("X-GitHub-Event", "push")
				req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("bench-%d-%d", n, i))
				req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
				b.StartTimer()
				sent := time.Now()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					b.Fatalf("webhook: %s", resp.Status)
				}
				var first time.Time
				for deadline := time.Now().Add(2 * time.Minute); first.IsZero() && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
					mu.Lock()
					if len(calls) > seen {
						first = calls[seen]
					}
					mu.Unlock()
				}
				if first.IsZero() {
					b.Fatalf("no provider call after webhook %d; daemon log:\n%s", i, tail(logs.String(), 30))
				}
				lat = append(lat, first.Sub(sent))
				b.StopTimer()
				waitStatus(before)
				samples = append(samples, sample{lat: first.Sub(sent), compacted: strings.Count(logs.String(), "Compacted pack files") > compactions})
				b.StartTimer()
			}
			b.StopTimer()
			converged("after the webhooks")
			// One line each: a benchmark's output is cut after ten lines.
			var slow []string
			slowCompacted, compacted := 0, 0
			for i, s := range samples {
				if s.compacted {
					compacted++
				}
				if s.lat > 500*time.Millisecond {
					mark := ""
					if s.compacted {
						slowCompacted++
						mark = " (compaction)"
					}
					slow = append(slow, fmt.Sprintf("#%d %v%s", i, s.lat.Round(time.Millisecond), mark))
				}
			}
			// The next webhook is sent as soon as a push is visible, as
			// back-to-back pushes would be, so it waits for what the sync
			// does after its push: the tail, from the daemon's log.
			tails := syncTails(logs.String())
			if len(tails) > 0 {
				tails = tails[1:] // the first sync's, before any webhook
			}
			var tail50, tailMax time.Duration
			if len(tails) > 0 {
				slices.Sort(tails)
				tail50, tailMax = tails[len(tails)/2], tails[len(tails)-1]
			}
			slices.Sort(lat)
			p50, p99 := lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
			rss := max(vmHWM(cmd.Process.Pid), firstRSS)
			b.Logf("%d clusters, %d machines, %d webhooks: p50 %v, p99 %v, max %v; peak RSS %.0f MiB (first sync %.0f MiB, webhooks %.0f MiB); %d pack compactions of the daemon's clone",
				n, machines, len(lat), p50.Round(time.Millisecond), p99.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond),
				rss, firstRSS, vmHWM(cmd.Process.Pid), compacted)
			b.Logf("after its status push, a sync ran on for %v (p50), %v at most, before the next could start", tail50.Round(time.Millisecond), tailMax.Round(time.Millisecond))
			if len(slow) > 0 {
				b.Logf("%d webhooks over 500 ms, %d of them after a pack compaction: %s", len(slow), slowCompacted, strings.Join(slow, ", "))
			}
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(p99.Seconds()/1.0, "p99/target")
			b.ReportMetric(rss, "rss-MiB")
			b.ReportMetric(firstRSS, "rss-first-sync-MiB")
			b.ReportMetric(float64(machines), "machines")
		})
	}
}

// syncTails reads a text log of `fleetd run` and returns, for each sync that
// pushed status, the time from "Pushed status" to its "Sync ended".
func syncTails(log string) []time.Duration {
	var out []time.Duration
	var pushed time.Time
	for _, line := range strings.Split(log, "\n") {
		ts, rest, ok := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(rest, `msg="Pushed status"`):
			pushed = t
		case strings.Contains(rest, `msg="Sync ended"`) && !pushed.IsZero():
			out = append(out, t.Sub(pushed))
			pushed = time.Time{}
		}
	}
	return out
}

func buildFleetdB(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "fleetd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fleetd")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddrB(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
