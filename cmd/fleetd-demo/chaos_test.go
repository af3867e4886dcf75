package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// buildFleetd builds the fleetd binary the crash trials run and kill.
func buildFleetd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fleetd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/fleetd")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestDaemonCrashTrials kills `fleetd run` with SIGKILL at random moments
// while it converges the example fleet on the simulators, with commits that
// scale pools up and down pushed between trials; each restart is a new
// process on the same work directory. At the end a last daemon converges:
// there must be no duplicate machine, no orphaned one, and the status branch
// must record the final revision. FLEETD_CHAOS_TRIALS sets the number of
// trials (20 in `make test`, 200 in `make chaos`).
func TestDaemonCrashTrials(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git binary not installed")
	}
	trials := 20
	if s := os.Getenv("FLEETD_CHAOS_TRIALS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("FLEETD_CHAOS_TRIALS=%q", s)
		}
		trials = n
	}
	if testing.Short() {
		trials = min(trials, 3)
	}
	ctx := context.Background()
	bin := buildFleetd(t)
	sb, err := StartSandbox(ctx, SandboxOptions{FleetDir: "../../examples/fleet-repo", Dir: t.TempDir(), Boot: 300 * time.Millisecond, Rancher: RancherOff})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	work := filepath.Join(sb.Dir, "fleetd-work")
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FLEETD_CHAOS_SEED"); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("FLEETD_CHAOS_SEED=%q", s)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 1)) //nolint:gosec // test randomness
	t.Logf("FLEETD_CHAOS_SEED=%d replays these trials", seed)

	start := func(logName string) *exec.Cmd {
		t.Helper()
		logf, err := os.Create(filepath.Join(sb.Dir, logName))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--repo", sb.Remote, "--branch", "main", "--work-dir", work,
			"--listen", freeAddr(t), "--poll-interval", "1s", "--log-format", "text")
		cmd.Env = sb.Environ()
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = logf.Close() })
		return cmd
	}
	workers := []string{"    replicas: 6", "    replicas: 8"}
	for i := range trials {
		if i%3 == 1 {
			// A merge changes the fleet under the daemon's feet: payments-prod
			// scales between 6 and 8 workers.
			from, to := workers[(i/3)%2], workers[(i/3+1)%2]
			p := filepath.Join(sb.Work, "clusters/payments/payments-prod.yaml")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(strings.Replace(string(b), from, to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"commit", "-q", "-am", "payments: scale trial " + strconv.Itoa(i)}, {"push", "-q", "origin", "main"}} {
				if err := sandboxGit(ctx, append([]string{"-C", sb.Work}, args...)...); err != nil {
					t.Fatal(err)
				}
			}
		}
		cmd := start(fmt.Sprintf("fleetd-%03d.log", i))
		delay := time.Duration(rng.Int64N(int64(3 * time.Second)))
		time.Sleep(delay)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		t.Logf("trial %d: killed after %v", i, delay.Round(time.Millisecond))
	}

	// The last daemon converges the fleet and stops cleanly.
	cmd := start("fleetd-final.log")
	deadline := time.Now().Add(3 * time.Minute)
	var final *reconcile.StatusSet
	head, _ := exec.Command("git", "--git-dir", sb.Remote, "rev-parse", "main").Output()
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		_, set, err := remoteStatus(ctx, sb.Remote)
		if err != nil || set == nil || set.Clusters["payments-prod"] == nil {
			continue
		}
		// The trials' commits change payments-prod's file: its status
		// records the final commit once the last change is synced.
		ready := set.Clusters["payments-prod"].SpecCommit == strings.TrimSpace(string(head))
		for _, st := range set.Clusters {
			if st.Phase != reconcile.PhaseReady {
				ready = false
			}
		}
		if ready {
			final = set
			break
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	if final == nil {
		log, _ := os.ReadFile(filepath.Join(sb.Dir, "fleetd-final.log"))
		t.Fatalf("the fleet did not converge after the crash trials; last log:\n%s", tail(string(log), 40))
	}

	// Every machine is desired, exactly once.
	fleet, diags := schema.Load(os.DirFS(sb.Work))
	if fleet == nil {
		t.Fatal(diags.Error())
	}
	want := map[string]bool{}
	for _, c := range fleet.Clusters {
		for k := range c.Effective.Pools {
			p := &c.Effective.Pools[k]
			tmpl := reconcile.NewTemplate(&c.Effective, p)
			for n := range p.Replicas {
				want[reconcile.MachineName(c.Effective.Name, p.Name, tmpl.Hash, n)] = true
			}
		}
	}
	seen := map[string]int{}
	for _, in := range sb.EC2.Instances() {
		if in.State == ec2test.StateTerminated || in.State == ec2test.StateShuttingDown {
			continue
		}
		seen[in.Tags["Name"]]++
	}
	vim, err := sb.VC.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := view.NewManager(vim).CreateContainerView(ctx, vim.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		t.Fatal(err)
	}
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name"}, &vms); err != nil {
		t.Fatal(err)
	}
	for _, vm := range vms {
		if vm.Name != sb.VC.Template && strings.Contains(vm.Name, "-") && !strings.HasPrefix(vm.Name, "DC0_") {
			seen[vm.Name]++
		}
	}
	for name, n := range seen {
		switch {
		case n > 1:
			t.Errorf("machine %s exists %d times", name, n)
		case !want[name]:
			t.Errorf("machine %s is orphaned: no desired pool has it", name)
		}
	}
	for name := range want {
		if seen[name] == 0 {
			t.Errorf("machine %s is missing", name)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestDaemonDemo runs `make demo`'s scenario as a test: fleetd run against
// the sandbox (Rancher on the test kube-apiserver when it is built)
// converges, takes a pushed commit through a signed webhook, scales down,
// decommissions a cluster and stops cleanly on SIGTERM.
func TestDaemonDemo(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git binary not installed")
	}
	bin := buildFleetd(t)
	var out, errb strings.Builder
	dir := t.TempDir()
	err := Run(context.Background(), []string{"--fleetd", bin, "--dir", dir, "--rancher", "auto", "--timeout", "4m", "../../examples/fleet-repo"}, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, out.String(), errb.String())
	}
	// Every line of the daemon's JSON log is one object with unique keys:
	// Elasticsearch and Loki refuse or mangle a repeated key.
	log, err := os.ReadFile(filepath.Join(dir, "fleetd.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	for i, line := range lines {
		if err := uniqueKeys(line); err != nil {
			t.Errorf("fleetd.log line %d: %v: %s", i+1, err, line)
		}
	}
	if len(lines) < 10 {
		t.Errorf("fleetd.log has %d lines", len(lines))
	}
	wants := []string{"GitHub's signed webhook: 202 Accepted", "trading/trading-dev Decommissioned", "fleetd run exited cleanly", "workers 8/8"}
	if strings.Contains(out.String(), "Rancher: a stand-in at") {
		// Rancher serves no new cluster's API before its first machine
		// registers: the status says the clusters are registering.
		wants = append(wants, "registering with Rancher (no node has joined yet): ")
	}
	for _, want := range wants {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo does not show %q:\n%s", want, out.String())
		}
	}
}

// uniqueKeys checks that line is one JSON object whose objects, nested ones
// included, repeat no key.
func uniqueKeys(line string) error {
	dec := json.NewDecoder(strings.NewReader(line))
	var walk func() error
	walk = func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string)
				if seen[key] {
					return fmt.Errorf("key %q repeated", key)
				}
				seen[key] = true
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := walk(); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}
