package main

import (
	"bytes"
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

	"github.com/fleetd/fleetd/providers/aws/ec2test"
)

// benchDaemonFleet writes a fleet of n paused clusters on one AWS provider:
// every sync loads, observes and plans all of them, and changes nothing.
func benchDaemonFleet(b *testing.B, dir string, n int) {
	b.Helper()
	fleet := `apiVersion: fleetd.io/v1alpha1
kind: Fleet
name: bench
providers:
  - name: aws-eu
    type: aws
    aws: {region: eu-west-1, subnets: [subnet-0a1b2c3d4e5f60001], image: ami-0abcdef1234567890}
teams:
  - name: team-a
  - name: team-b
sizes:
  medium: {aws: {instanceType: m6i.xlarge}}
classes:
  std:
    kubernetesVersion: v1.31.4+rke2r1
    pools:
      - {name: control, roles: [etcd, controlplane], replicas: 3, size: medium}
      - {name: workers, roles: [worker], replicas: 3, size: medium}
pricing:
  aws-eu: {instanceHourly: {m6i.xlarge: 0.214}}
`
	if err := os.WriteFile(filepath.Join(dir, "fleet.yaml"), []byte(fleet), 0o644); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		team := []string{"team-a", "team-b"}[i%2]
		p := filepath.Join(dir, "clusters", team, fmt.Sprintf("c%05d.yaml", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		body := fmt.Sprintf("apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: c%05d\nteam: %s\nprovider: aws-eu\nclass: std\npaused: true\nlabels: {rev: \"0\"}\n", i, team)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
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
// in production) on fleets of 1,000 and 10,000 clusters and times, over 200
// pushes that each change one cluster file, the moment GitHub's signed
// webhook is sent to the moment the daemon's sync makes its first provider
// call (DescribeInstances at the EC2 server). It reports p50 and p99, p99
// against the 1 s target, and the daemon's peak RSS (targets 200 MiB at
// 1,000 clusters, 1 GiB at 10,000).
func BenchmarkDaemonWebhook(b *testing.B) {
	if _, err := exec.LookPath("git"); err != nil {
		b.Skip("git binary not installed")
	}
	bin := buildFleetdB(b)
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("clusters=%d", n), func(b *testing.B) {
			webhooks := 200
			if s := os.Getenv("FLEETD_BENCH_WEBHOOKS"); s != "" {
				webhooks, _ = strconv.Atoi(s)
			}
			work := b.TempDir()
			benchDaemonFleet(b, work, n)
			benchGit(b, work, "init", "-q", "-b", "main")
			benchGit(b, work, "add", "-A")
			benchGit(b, work, "commit", "-q", "-m", "fleet")
			remote := filepath.Join(b.TempDir(), "fleet.git")
			benchGit(b, work, "clone", "-q", "--bare", ".", remote)
			benchGit(b, work, "remote", "add", "origin", remote)

			ec2 := ec2test.New()
			defer ec2.Close()
			ec2.AddImage("ami-0abcdef1234567890", "/dev/sda1")
			ec2.AddSubnet("subnet-0a1b2c3d4e5f60001", "eu-west-1a")
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
			cmd := exec.Command(bin, "run", "--repo", remote, "--branch", "main", "--work-dir", b.TempDir(),
				"--listen", addr, "--poll-interval", "1h", "--github-webhook-secret-file", secretFile, "--log-format", "text")
			var logs bytes.Buffer
			cmd.Stdout, cmd.Stderr = &logs, &logs
			cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL_EC2="+ec2.URL, "AWS_ACCESS_KEY_ID="+ec2test.AccessKeyID,
				"AWS_SECRET_ACCESS_KEY="+ec2test.SecretAccessKey, "AWS_EC2_METADATA_DISABLED=true", "AWS_REGION=eu-west-1",
				"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
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
			waitStatus("")

			var lat []time.Duration
			b.ResetTimer()
			for i := range webhooks {
				b.StopTimer()
				p := filepath.Join(work, "clusters", "team-a", "c00000.yaml")
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
				b.StartTimer()
			}
			b.StopTimer()
			for i, l := range lat {
				if l > time.Second {
					b.Logf("webhook %d took %v to reach the provider", i, l.Round(time.Millisecond))
				}
			}
			slices.Sort(lat)
			p50, p99 := lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(p99.Seconds()/1.0, "p99/target")
			b.ReportMetric(vmHWM(cmd.Process.Pid), "rss-MiB")
		})
	}
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
