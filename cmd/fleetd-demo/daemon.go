package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fleetd/fleetd/reconcile"
)

// daemonDemo is `make demo`: fleetd run, the daemon itself, against the
// sandbox, as a team meets it: it converges the fleet, a person pushes a
// commit and GitHub sends its signed webhook, fleetd converges again, then a
// cluster is removed and decommissioned.
type daemonDemo struct {
	out    io.Writer
	fleetd string // the fleetd binary
	dir    string
	sb     *Sandbox
	secret string
	listen string
	cmd    *exec.Cmd
	logf   *os.File
	done   chan error

	rancher  RancherMode
	progress io.Writer
}

func (d *daemonDemo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func runDaemonDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("fleetd-demo daemon", stderr)
	fleetd := fl.String("fleetd", "bin/fleetd", "the fleetd binary to run")
	keep := fl.String("dir", "", "keep the demo's repositories and logs here (default: a new temporary directory, kept)")
	timeout := fl.Duration("timeout", 5*time.Minute, "give up when a step takes longer")
	withRancher := fl.String("rancher", "build", "play Rancher with the stand-in on the test kube-apiserver: build (build it on the first run), auto (when built) or off")
	if err := fl.Parse(args); err != nil {
		return err
	}
	src := "examples/fleet-repo"
	if fl.NArg() > 0 {
		src = fl.Arg(0)
	}
	bin, err := filepath.Abs(*fleetd)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (make build makes it)", *fleetd, err)
	}
	dir := *keep
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fleetd-demo-"); err != nil {
			return err
		}
	}
	rm, ok := map[string]RancherMode{"auto": RancherAuto, "build": RancherBuild, "off": RancherOff}[*withRancher]
	if !ok {
		return fmt.Errorf("--rancher %q: want build, auto or off", *withRancher)
	}
	d := &daemonDemo{out: stdout, fleetd: bin, dir: dir, rancher: rm, progress: stderr}
	ctx, cancel := context.WithTimeout(ctx, 4**timeout)
	defer cancel()
	err = d.run(ctx, src, *timeout)
	d.stop()
	if d.sb != nil {
		d.sb.Close()
	}
	d.say("\nThe fleet repository and fleetd's log are kept in %s (fleet.git, fleet-repo/, fleetd.log); nothing is left running.", dir)
	return err
}

func (d *daemonDemo) run(ctx context.Context, src string, step time.Duration) error {
	d.say("== fleetd demo: the daemon, fleetd run, against simulators on 127.0.0.1")
	if d.rancher == RancherBuild && cachedKubeAssets() == "" && os.Getenv("FLEETD_KUBE_ASSETS") == "" {
		d.say("   Rancher is played by a stand-in on a real kube-apiserver: building kube-apiserver and etcd first (about 9 minutes, once; progress below)")
	}
	sb, err := StartSandbox(ctx, SandboxOptions{FleetDir: src, Dir: d.dir, Boot: time.Second, Rancher: d.rancher, Progress: d.progress})
	if err != nil {
		return err
	}
	d.sb = sb
	d.say("   vCenter simulator %s, EC2 endpoint %s, fleet repository %s", sb.VC.URL, sb.EC2.URL, sb.Remote)
	if sb.RancherURL != "" {
		d.say("   Rancher: a stand-in at %s on a real kube-apiserver", sb.RancherURL)
	}
	for _, n := range sb.Notes {
		d.say("   note: %s", n)
	}
	if err := d.start(); err != nil {
		return err
	}
	d.say("   fleetd run is listening on %s (pid %d)", d.listen, d.cmd.Process.Pid)

	d.say("\n== 1. fleetd creates every cluster of the fleet")
	if err := d.converge(ctx, step, nil); err != nil {
		return err
	}

	d.say("\n== 2. A merge request is merged: payments-prod gets 8 workers, and a temporary cluster qa-pr-91 (ttl: 2h) is added")
	if err := d.edit("clusters/payments/payments-prod.yaml", "    replicas: 6", "    replicas: 8"); err != nil {
		return err
	}
	tmp := "apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: qa-pr-91\nteam: qa\nprovider: aws-eu\nclass: minimal\nttl: 2h\n"
	if err := os.WriteFile(filepath.Join(sb.Work, "clusters/qa/qa-pr-91.yaml"), []byte(tmp), 0o644); err != nil { //nolint:gosec // the demo's own clone
		return err
	}
	if err := d.push(ctx, "payments: 8 workers for payments-prod; qa: a cluster for PR 91"); err != nil {
		return err
	}
	if err := d.converge(ctx, step, func(s *reconcile.StatusSet) bool {
		return s.Clusters["qa-pr-91"] != nil && strings.Contains(poolSummary(s.Clusters["payments-prod"]), "workers 8/8")
	}); err != nil {
		return err
	}
	if err := d.printSummary(ctx); err != nil {
		return err
	}

	d.say("\n== 3. payments-prod scales back to 6 workers: each machine is drained, removed from Rancher, then deleted")
	if err := d.edit("clusters/payments/payments-prod.yaml", "    replicas: 8", "    replicas: 6"); err != nil {
		return err
	}
	if err := d.push(ctx, "payments: payments-prod back to 6 workers"); err != nil {
		return err
	}
	if err := d.converge(ctx, step, func(s *reconcile.StatusSet) bool {
		st := s.Clusters["payments-prod"]
		if st == nil || !strings.Contains(poolSummary(st), "workers 6/6") {
			return false
		}
		for _, p := range st.Pools {
			if p.Name == "workers" && p.Existing != 6 {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}

	d.say("\n== 4. trading-dev is removed: fleetd decommissions it")
	if err := sandboxGit(ctx, "-C", sb.Work, "rm", "-q", "clusters/trading/trading-dev.yaml"); err != nil {
		return err
	}
	if err := d.push(ctx, "trading: remove trading-dev"); err != nil {
		return err
	}
	if err := d.converge(ctx, step, func(s *reconcile.StatusSet) bool {
		st := s.Clusters["trading-dev"]
		return st == nil || st.Phase == reconcile.PhaseDecommissioned
	}); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "git", "--git-dir", sb.Remote, "log", "--format=%h %s", "fleet-status").Output()
	if err != nil {
		return err
	}
	d.say("\n== The history of the fleet, as teams read it (git log fleet-status)\n%s", out)
	d.say("== 5. fleetd stops on SIGTERM: it finishes what it is doing and exits")
	return nil
}

// start runs fleetd run with the sandbox's environment and a webhook secret.
func (d *daemonDemo) start() error {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	d.secret = hex.EncodeToString(secret)
	secretFile := filepath.Join(d.dir, "github-webhook-secret")
	if err := os.WriteFile(secretFile, []byte(d.secret+"\n"), 0o600); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d.listen = l.Addr().String()
	_ = l.Close()
	logf, err := os.Create(filepath.Join(d.dir, "fleetd.log"))
	if err != nil {
		return err
	}
	d.logf = logf
	d.cmd = exec.Command(d.fleetd, "run", //nolint:gosec // the binary the demo was asked to run
		"--repo", d.sb.Remote, "--branch", "main", "--work-dir", filepath.Join(d.dir, "fleetd-work"),
		"--listen", d.listen, "--poll-interval", "30s", "--github-webhook-secret-file", secretFile,
		"--log-format", "json")
	d.cmd.Env = d.sb.Environ()
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		return err
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait() }()
	for range 100 {
		if resp, err := http.Get("http://" + d.listen + "/healthz"); err == nil {
			_ = resp.Body.Close()
			return nil
		}
		select {
		case err := <-d.done:
			d.done <- err
			return fmt.Errorf("fleetd run exited at start: %v (see %s)", err, logf.Name())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("fleetd run does not answer on %s (see %s)", d.listen, logf.Name())
}

// stop sends SIGTERM and waits for fleetd to exit.
func (d *daemonDemo) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			d.say("   fleetd run exited: %v", err)
		} else {
			d.say("   fleetd run exited cleanly")
		}
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		d.say("   fleetd run did not stop within 30s: killed")
	}
	if d.logf != nil {
		_ = d.logf.Close()
	}
	d.cmd = nil
}

func (d *daemonDemo) edit(path, old, repl string) error {
	p := filepath.Join(d.sb.Work, path)
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte(old)) {
		return errors.New(path + ": nothing to change")
	}
	return os.WriteFile(p, bytes.Replace(b, []byte(old), []byte(repl), 1), 0o644) //nolint:gosec // the demo's own clone
}

// push commits and pushes the clone's changes, then sends GitHub's signed
// push webhook, as GitHub would.
func (d *daemonDemo) push(ctx context.Context, msg string) error {
	for _, args := range [][]string{{"add", "-A"}, {"commit", "-q", "-m", msg}, {"push", "-q", "origin", "main"}} {
		if err := sandboxGit(ctx, append([]string{"-C", d.sb.Work}, args...)...); err != nil {
			return err
		}
	}
	head, err := exec.CommandContext(ctx, "git", "-C", d.sb.Work, "rev-parse", "HEAD").Output()
	if err != nil {
		return err
	}
	body := fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"full_name":"acme/fleet"},"head_commit":{"message":%q}}`,
		strings.TrimSpace(string(head)), msg)
	mac := hmac.New(sha256.New, []byte(d.secret))
	mac.Write([]byte(body))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+d.listen+"/hooks/github", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("demo-%d", time.Now().UnixNano()))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	d.say("   pushed %q; GitHub's signed webhook: %s", msg, resp.Status)
	return nil
}

// converge prints each new status commit until every cluster is Ready (or
// gone) and done, when given, holds.
func (d *daemonDemo) converge(ctx context.Context, timeout time.Duration, done func(*reconcile.StatusSet) bool) error {
	deadline := time.Now().Add(timeout)
	last := ""
	registering := map[string]bool{}
	for time.Now().Before(deadline) {
		select {
		case err := <-d.done:
			d.done <- err
			return fmt.Errorf("fleetd run exited: %v (see %s)", err, d.logf.Name())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		head, set, err := d.status(ctx)
		if err != nil || head == last || set == nil {
			continue
		}
		last = head
		subject, _ := exec.CommandContext(ctx, "git", "--git-dir", d.sb.Remote, "log", "-1", "--format=%h %s", "fleet-status").Output()
		d.say("   %s", strings.TrimSpace(string(subject)))
		// A new cluster is registering until its first machine joins:
		// Rancher does not serve its API before that.
		var names []string
		for name, st := range set.Clusters {
			if strings.HasPrefix(st.Message, "registering:") && !registering[name] {
				registering[name] = true
				names = append(names, st.Team+"/"+name)
			}
		}
		if len(names) > 0 {
			slices.Sort(names)
			d.say("     registering with Rancher (no node has joined yet): %s", strings.Join(names, ", "))
		}
		ready := true
		for _, st := range set.Clusters {
			if st.Phase != reconcile.PhaseReady && st.Phase != reconcile.PhaseDecommissioned {
				ready = false
			}
		}
		if ready && (done == nil || done(set)) {
			d.say("   converged: %d clusters", len(set.Clusters))
			return nil
		}
	}
	return fmt.Errorf("the fleet did not converge within %s (see %s)", timeout, d.logf.Name())
}

// status reads the status branch of the fleet repository.
func (d *daemonDemo) status(ctx context.Context) (string, *reconcile.StatusSet, error) {
	return remoteStatus(ctx, d.sb.Remote)
}

// remoteStatus reads the fleet-status branch of a bare repository: its
// head and the status files parsed.
func remoteStatus(ctx context.Context, remote string) (string, *reconcile.StatusSet, error) {
	head, err := exec.CommandContext(ctx, "git", "--git-dir", remote, "rev-parse", "--verify", "-q", "fleet-status").Output()
	if err != nil {
		return "", nil, err
	}
	names, err := exec.CommandContext(ctx, "git", "--git-dir", remote, "ls-tree", "-r", "--name-only", "fleet-status", "status/").Output()
	if err != nil {
		return "", nil, err
	}
	files := map[string][]byte{}
	for _, n := range strings.Fields(string(names)) {
		b, err := exec.CommandContext(ctx, "git", "--git-dir", remote, "show", "fleet-status:"+n).Output()
		if err != nil {
			return "", nil, err
		}
		files[n] = b
	}
	set, err := reconcile.ReadStatusFiles(files)
	return strings.TrimSpace(string(head)), set, err
}

func (d *daemonDemo) printSummary(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "git", "--git-dir", d.sb.Remote, "show", "fleet-status:status/SUMMARY.md").Output()
	if err != nil {
		return err
	}
	d.say("\n== status/SUMMARY.md on fleet-status\n\n%s", out)
	return nil
}

func poolSummary(st *reconcile.ClusterStatus) string {
	if st == nil {
		return ""
	}
	var parts []string
	for _, p := range st.Pools {
		parts = append(parts, fmt.Sprintf("%s %d/%d", p.Name, p.Ready, p.Desired))
	}
	return strings.Join(parts, ", ")
}
