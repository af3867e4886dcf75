package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// childArgsEnv carries the arguments of `fleetd run` to TestFleetdChild in a
// re-executed test binary, separated by newlines.
const childArgsEnv = "FLEETD_BENCH_CHILD_ARGS"

// TestFleetdChild is not a test: it is `fleetd run` in a process of its
// own, for the flood benchmark, which needs the daemon's RSS apart from its
// own. It does nothing unless FLEETD_BENCH_CHILD_ARGS is set.
func TestFleetdChild(t *testing.T) {
	args := os.Getenv(childArgsEnv)
	if args == "" {
		t.Skip("only run by BenchmarkRunWebhookFlood")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(Run(ctx, strings.Split(args, "\n"), os.Stdout, os.Stderr))
}

// BenchmarkRunWebhookFlood starts `fleetd run` as a child process (this
// test binary re-executed, or FLEETD_BENCH_BINARY, e.g. bin/fleetd of
// another build, to compare) with a GitHub webhook secret, on a fleet repo
// whose fleet.yaml is invalid (so no peer is contacted), and floods it for
// FLEETD_BENCH_FLOOD (default 20s) with 1,000 concurrent senders of slow
// bad-signature requests: each announces a 1,000,000-byte body, sends
// 16 KiB every 100 ms up to 900 KiB and never the rest, and connects again
// when the server closes its connection. It prints the daemon's RSS
// (/proc/<pid>/status VmRSS) idle, at its highest under the flood, and
// after it, and how the requests ended. The target is a peak within 64 MiB
// of idle; before the in-flight limit, 600 such senders took it from 120 to
// 1,410 MiB.
func BenchmarkRunWebhookFlood(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc/<pid>/status")
	}
	if _, err := exec.LookPath("git"); err != nil {
		b.Skip("git binary not installed")
	}
	flood := 20 * time.Second
	if v := os.Getenv("FLEETD_BENCH_FLOOD"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("FLEETD_BENCH_FLOOD: %v", err)
		}
		flood = d
	}
	const senders = 1000

	repo := b.TempDir()
	if err := os.WriteFile(filepath.Join(repo, "fleet.yaml"), []byte("apiVersion: fleetd.io/v1alpha1\nkind: Fleet\nname: acme\nproviders: 5\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "fleet"}} {
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=Bench", "-c", "user.email=bench@example.com"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	secret := filepath.Join(b.TempDir(), "github-secret")
	if err := os.WriteFile(secret, []byte("bench-secret\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	args := []string{"run", "--repo", repo, "--branch", "main", "--listen", addr, "--work-dir", b.TempDir(),
		"--github-webhook-secret-file", secret, "--poll-interval", "1m"}
	var cmd *exec.Cmd
	if bin := os.Getenv("FLEETD_BENCH_BINARY"); bin != "" {
		cmd = exec.Command(bin, args...)
	} else {
		cmd = exec.Command(os.Args[0], "-test.run=^TestFleetdChild$")
		cmd.Env = append(os.Environ(), childArgsEnv+"="+strings.Join(args, "\n"))
	}
	logPath := filepath.Join(b.TempDir(), "fleetd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	pid := cmd.Process.Pid

	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("fleetd run did not listen: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the first sync, and the runtime settles
	idle := vmRSS(b, pid)

	for b.Loop() {
		var (
			wg           sync.WaitGroup
			peak         atomic.Int64
			statuses     sync.Map // status code -> *atomic.Int64
			bodyBytes    atomic.Int64
			connectFails atomic.Int64
		)
		peak.Store(idle)
		count := func(code int) {
			v, _ := statuses.LoadOrStore(code, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		}
		ctx, cancel := context.WithTimeout(context.Background(), flood)
		for i := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					code, sent, err := slowBadRequest(ctx, addr, i)
					bodyBytes.Add(sent)
					switch {
					case err != nil:
						connectFails.Add(1)
					case code > 0:
						count(code)
					}
					select {
					case <-ctx.Done():
					case <-time.After(200 * time.Millisecond):
					}
				}
			}()
		}
		sampler := time.NewTicker(250 * time.Millisecond)
	sample:
		for {
			select {
			case <-ctx.Done():
				break sample
			case <-sampler.C:
				if r := vmRSS(b, pid); r > peak.Load() {
					peak.Store(r)
				}
			}
		}
		sampler.Stop()
		cancel()
		wg.Wait()
		time.Sleep(2 * time.Second)
		after := vmRSS(b, pid)
		// VmHWM catches a peak between two samples.
		hwm := procStatus(b, pid, "VmHWM")
		peak.Store(max(peak.Load(), hwm))

		var ends []string
		statuses.Range(func(k, v any) bool {
			ends = append(ends, fmt.Sprintf("%d: %d", k, v.(*atomic.Int64).Load()))
			return true
		})
		mib := func(kib int64) float64 { return float64(kib) / 1024 }
		b.ReportMetric(mib(idle), "idle-MiB")
		b.ReportMetric(mib(peak.Load()), "peak-MiB")
		b.ReportMetric(mib(peak.Load()-idle), "growth-MiB")
		b.ReportMetric(mib(after), "after-MiB")
		b.ReportMetric(0, "ns/op")
		b.Logf("fleetd run (pid %d) under %d senders of slow bad-signature requests for %s: RSS idle %.1f MiB, peak %.1f MiB (+%.1f MiB), after %.1f MiB; answers %v, %d connections failed, %.1f MiB of bodies sent",
			pid, senders, flood, mib(idle), mib(peak.Load()), mib(peak.Load()-idle), mib(after), ends, connectFails.Load(), float64(bodyBytes.Load())/(1<<20))
		if os.Getenv("FLEETD_BENCH_BINARY") == "" && peak.Load()-idle > 64<<10 {
			b.Logf("RSS grew by more than 64 MiB under the flood; log: %s", logPath)
		}
	}
}

// slowBadRequest sends one GitHub webhook with a bad signature, announcing
// a 1,000,000-byte body and sending 900 KiB of it slowly, and returns the
// status the server answered (0 when it closed the connection without an
// answer) and the body bytes sent.
func slowBadRequest(ctx context.Context, addr string, i int) (int, int64, error) {
	d := net.Dialer{Timeout: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	head := "POST /hooks/github HTTP/1.1\r\nHost: fleetd\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\n" +
		"X-GitHub-Delivery: flood-" + strconv.Itoa(i) + "\r\nX-Hub-Signature-256: sha256=" + strings.Repeat("0f", 32) + "\r\n" +
		"Content-Length: 1000000\r\n\r\n"
	if _, err := io.WriteString(c, head); err != nil {
		return 0, 0, nil
	}
	answered := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	chunk := make([]byte, 16<<10)
	for i := range chunk {
		chunk[i] = 'a'
	}
	var sent int64
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case code := <-answered:
			return code, sent, nil
		case <-ctx.Done():
			return 0, sent, nil
		case <-tick.C:
			if sent >= 900<<10 {
				continue // never the rest: hold the connection
			}
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			n, err := c.Write(chunk)
			sent += int64(n)
			if err != nil {
				return <-answered, sent, nil
			}
		}
	}
}

// vmRSS returns the resident set size of pid in KiB.
func vmRSS(b *testing.B, pid int) int64 { return procStatus(b, pid, "VmRSS") }

func procStatus(b *testing.B, pid int, field string) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("read the daemon's status: %v", err)
	}
	for l := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("%s: %v", l, err)
			}
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
