package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/fleetd/fleetd/internal/fleetsync"
	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/internal/live"
	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
	"github.com/fleetd/fleetd/providers/aws"
	"github.com/fleetd/fleetd/providers/vsphere"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/reconcile/reconciletest"
	"github.com/fleetd/fleetd/schema"
)

// Run runs the demo with args ([FLEET_DIR], flags) and writes its story to stdout.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "up":
			return up(ctx, args[1:], stdout, stderr)
		case "loop":
			return runLoopDemo(ctx, args[1:], stdout, stderr)
		}
	}
	return runDaemonDemo(ctx, args, stdout, stderr)
}

// runLoopDemo runs the sync loop in this process on a simulated clock, so a
// TTL expires in a moment: `fleetd-demo loop`.
func runLoopDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("fleetd-demo", stderr)
	workDir := fl.String("work-dir", "", "keep the demo's repositories here (default: a temporary directory, removed at the end)")
	maxSyncs := fl.Int("max-syncs", 30, "give up converging after this many syncs")
	verbose := fl.Bool("v", false, "log every action")
	rancherMode := fl.String("rancher", "kube", "who plays Rancher: kube (a real kube-apiserver with the Rancher stand-in; built on first use) or memory (an in-memory simulation)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	src := "examples/fleet-repo"
	if fl.NArg() > 0 {
		src = fl.Arg(0)
	}
	if fl.NArg() > 1 {
		return fmt.Errorf("unexpected arguments %q", fl.Args()[1:])
	}
	if *workDir == "" {
		tmp, err := os.MkdirTemp("", "fleetd-demo-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(tmp) }()
		*workDir = tmp
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	if *rancherMode != "kube" && *rancherMode != "memory" {
		return fmt.Errorf("-rancher %q: want kube or memory", *rancherMode)
	}
	d := &demo{
		useKube:  *rancherMode == "kube",
		progress: stderr,
		out:      stdout,
		log:      slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		dir:      *workDir,
		maxSyncs: *maxSyncs,
		// The simulated clock starts at the real hour: the simulators
		// stamp machines with real launch times, and a ttl never runs out
		// before the cluster's first machine has lived that long.
		now: time.Now().UTC().Truncate(time.Hour),
	}
	return d.run(ctx, src)
}

type demo struct {
	useKube  bool
	kube     *kubeRancher
	progress io.Writer
	out      io.Writer
	log      *slog.Logger
	dir      string
	maxSyncs int
	now      time.Time // the simulated clock

	people  string // the people's clone of the fleet repo, which is the remote
	loop    *fleetsync.Loop
	ec2     *ec2test.Server
	vc      *vcsimserver.Server
	rancher *reconciletest.World
	world   reconcile.World
	// closeWorld ends the providers' sessions.
	closeWorld func(context.Context)
	syncs      int
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) run(ctx context.Context, src string) error {
	fleet, diags := schema.Load(os.DirFS(src))
	if diags.HasErrors() || fleet == nil {
		return fmt.Errorf("%s is not a valid fleet:\n%s", src, diags.Error())
	}
	d.say("== fleetd demo: %d clusters of fleet %q from %s", len(fleet.Clusters), fleet.Spec.Name, src)

	// The fleet repo: a git repository that people commit to, and fleetd's
	// own clone of it in a work directory.
	d.people = filepath.Join(d.dir, "fleet-repo")
	if err := os.CopyFS(d.people, os.DirFS(src)); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := d.git(ctx, "init", "-q", "-b", "main"); err != nil {
		return err
	}
	if err := d.commitAll(ctx, "Add the ACME fleet"); err != nil {
		return err
	}
	repoSrc := &fleetsync.RepoSource{Options: fgit.Options{
		URL: d.people, Branch: "main", Dir: filepath.Join(d.dir, "fleetd-work"), Logger: d.log,
		Now: func() time.Time { return d.now },
	}}
	defer repoSrc.Close()

	if err := d.startProviders(ctx, fleet); err != nil {
		return err
	}
	defer d.ec2.Close()
	defer d.vc.Close()
	defer d.closeWorld(context.WithoutCancel(ctx))
	if d.useKube && fleet.Spec.Rancher != nil {
		if err := d.startKubeRancher(ctx, fleet); err != nil {
			return err
		}
		defer d.kube.stop()
		d.say("   providers: vCenter simulator at %s, EC2 endpoint at %s", d.vc.URL, d.ec2.URL)
	} else {
		d.say("   providers: vCenter simulator at %s, EC2 endpoint at %s; Rancher simulated in memory", d.vc.URL, d.ec2.URL)
	}

	d.loop = &fleetsync.Loop{
		Source: repoSrc, Logger: d.log, Now: func() time.Time { return d.now },
		World: func(context.Context, *schema.Fleet, *slog.Logger) (reconcile.World, func(context.Context), error) {
			return d.world, func(context.Context) {}, nil
		},
		Apply: reconcile.ApplyOptions{Concurrency: 8},
	}

	d.say("\n== 1. First syncs: fleetd creates every cluster")
	if err := d.converge(ctx); err != nil {
		return err
	}

	d.say("\n== 2. A merge request is merged: payments-prod gets 8 workers, trading-dev is removed")
	if err := d.edit("clusters/payments/payments-prod.yaml", "    replicas: 6", "    replicas: 8"); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(d.people, "clusters/trading/trading-dev.yaml")); err != nil {
		return err
	}
	d.now = d.now.Add(10 * time.Minute)
	if err := d.commitAll(ctx, "payments: scale payments-prod; trading: remove trading-dev"); err != nil {
		return err
	}
	if err := d.converge(ctx); err != nil {
		return err
	}

	d.say("\n== 3. Two days later the temporary cluster qa-pr-77 (ttl: 48h) expires")
	d.now = d.now.Add(49 * time.Hour)
	d.rancher.Advance(49 * time.Hour)
	if err := d.converge(ctx); err != nil {
		return err
	}

	if d.kube != nil {
		if err := d.scaleDown(ctx); err != nil {
			return err
		}
	}

	rs, err := repoSrc.ReadStatus(ctx, fleet)
	if err != nil {
		return err
	}
	d.say("\n== status/SUMMARY.md on %s\n", rs.From)
	d.say("%s", rs.Files[path.Join(reconcile.StatusDir, reconcile.SummaryFile)])
	logOut, err := exec.CommandContext(ctx, "git", "-C", d.people, "log", "--format=%h %s", fleet.StatusBranch()).Output()
	if err != nil {
		return fmt.Errorf("git log: %w", err)
	}
	d.say("== The history of the fleet, as teams read it (git log %s)\n%s", fleet.Spec.Status.Branch, logOut)
	return nil
}

// startProviders serves every provider of the fleet from a simulator on
// 127.0.0.1 and builds the real providers against them.
func (d *demo) startProviders(ctx context.Context, fleet *schema.Fleet) error {
	d.ec2 = ec2test.New()
	// The simulator's template takes the name the fleet's vSphere providers
	// clone from.
	opts := vcsimserver.Options{}
	for _, p := range fleet.Spec.Providers {
		if p.VSphere != nil {
			opts.Template = p.VSphere.Template
		}
	}
	vc, err := vcsimserver.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("vCenter simulator: %w", err)
	}
	d.vc = vc
	caFile := filepath.Join(d.dir, "vcenter-ca.pem")
	if err := vc.WriteCA(caFile); err != nil {
		return err
	}
	d.rancher = reconciletest.NewWorld(d.now)
	rw := d.rancher.World(fleet.Spec.Rancher != nil)
	for _, p := range fleet.Spec.Providers {
		if p.Type != schema.ProviderAWS {
			continue
		}
		for i, subnet := range p.AWS.Subnets {
			d.ec2.AddSubnet(subnet, p.AWS.Region+string(rune('a'+i%3)))
		}
		for _, image := range awsImages(fleet, p) {
			d.ec2.AddImage(image, "/dev/sda1")
		}
	}
	// The world is built as fleetd builds it (internal/live), with the
	// simulators' endpoints and logins in place of fleet.yaml's, and
	// Rancher in memory until the stand-in replaces it.
	w, closeW, err := live.Options{
		AWS: func(c *aws.Config) {
			c.Endpoint = d.ec2.URL
			c.Credentials = credentials.NewStaticCredentialsProvider(ec2test.AccessKeyID, ec2test.SecretAccessKey, "")
		},
		VSphere: func(c *vsphere.Config) {
			c.Spec = vc.Spec(c.Spec.Folder, "", caFile)
			c.Username, c.Password = "demo", "demo"
		},
		Rancher: &rw,
	}.World(ctx, fleet, d.log)
	if err != nil {
		return err
	}
	d.world, d.closeWorld = w, closeW
	return nil
}

// awsImages lists the images a fleet's clusters use on provider p.
func awsImages(fleet *schema.Fleet, p schema.Provider) []string {
	set := map[string]bool{}
	if p.AWS.Image != "" {
		set[p.AWS.Image] = true
	}
	for _, s := range fleet.Spec.Sizes {
		if s.AWS != nil && s.AWS.Image != "" {
			set[s.AWS.Image] = true
		}
	}
	out := make([]string, 0, len(set))
	for img := range set {
		out = append(out, img)
	}
	sort.Strings(out)
	return out
}

// converge syncs until the plan is empty and nothing is in progress, letting
// simulated time pass between syncs: machines boot and join Rancher.
func (d *demo) converge(ctx context.Context) error {
	for range d.maxSyncs {
		done, err := d.sync(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		d.tick(ctx)
	}
	return fmt.Errorf("the fleet did not converge within %d syncs", d.maxSyncs)
}

// sync is one sync of the loop the daemon runs: fetch, load, observe, plan,
// gate, apply, report. It reports whether the fleet has converged.
func (d *demo) sync(ctx context.Context) (bool, error) {
	d.syncs++
	res := d.loop.Sync(ctx)
	if res.Snapshot == nil {
		return false, res.Err
	}
	line := fmt.Sprintf("sync %2d  %s  %s", d.syncs, d.now.Format("Jan 02 15:04"), summarize(&res.Plan))
	if err := res.Err; err != nil {
		first, _, _ := strings.Cut(err.Error(), "\n")
		if res.Decision.Reaction == reconcile.ReactRequeue {
			// Rancher has not caught up yet (an ID, a token): the next sync goes on.
			line += "\n         in progress: " + first
		} else {
			line += "\n         error: " + first
		}
	}
	var registering []string
	for i := range res.Plan.Clusters {
		cp := &res.Plan.Clusters[i]
		if slices.ContainsFunc(cp.Waiting, func(w string) bool { return strings.Contains(w, " is registering: ") }) {
			registering = append(registering, cp.Team+"/"+cp.Name)
		}
	}
	if len(registering) > 0 {
		// Rancher does not serve a new cluster's API before its first
		// machine joins: work in progress, not an error.
		line += "\n         registering with Rancher (no node has joined yet): " + strings.Join(registering, ", ")
	}
	if res.StatusCommit != "" {
		line += fmt.Sprintf("\n         status commit %s %q", short(res.StatusCommit), res.StatusSubject)
	}
	d.say("%s", line)
	return res.Plan.Converged() && res.Err == nil, nil
}

// tick lets a minute of simulated time pass: instances boot or finish
// terminating, Rancher assigns IDs and removes deleted objects, and running
// machines run their registration command and join their cluster.
func (d *demo) tick(ctx context.Context) {
	d.now = d.now.Add(time.Minute)
	d.rancher.Advance(time.Minute)
	for _, in := range d.ec2.Instances() {
		switch in.State {
		case ec2test.StatePending:
			_ = d.ec2.SetState(in.ID, ec2test.StateRunning)
		case ec2test.StateShuttingDown:
			_ = d.ec2.SetState(in.ID, ec2test.StateTerminated)
		}
	}
	if d.kube != nil {
		d.tickKube(ctx)
		return
	}
	d.rancher.Settle()
	for _, p := range d.world.Providers {
		ms, err := p.List(ctx)
		if err != nil {
			d.log.Warn("Cannot list machines", "provider", p.Name(), "error", err)
			continue
		}
		for _, m := range ms {
			if m.State == reconcile.MachineRunning {
				d.rancher.Join(m.Cluster, m.Name, true)
			}
		}
	}
}

func summarize(p *reconcile.Plan) string {
	var buf bytes.Buffer
	_ = p.WriteText(&buf)
	lines := strings.Split(buf.String(), "\n")
	var parts []string
	for _, l := range lines[1:min(len(lines), 4)] {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	if p.Converged() {
		return "converged: nothing to do"
	}
	return strings.Join(parts, "; ")
}

func (d *demo) git(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", d.people}, args...)...)
	date := d.now.Format(time.RFC3339)
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=Ada Platform", "GIT_AUTHOR_EMAIL=ada@acme.example",
		"GIT_COMMITTER_NAME=Ada Platform", "GIT_COMMITTER_EMAIL=ada@acme.example",
		"GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date,
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (d *demo) commitAll(ctx context.Context, msg string) error {
	if err := d.git(ctx, "add", "-A"); err != nil {
		return err
	}
	return d.git(ctx, "commit", "-q", "-m", msg)
}

func (d *demo) edit(path, old, repl string) error {
	p := filepath.Join(d.people, path)
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if !bytes.Contains(data, []byte(old)) {
		return errors.New(path + ": nothing to change")
	}
	return os.WriteFile(p, bytes.Replace(data, []byte(old), []byte(repl), 1), 0o644) //nolint:gosec // p is a file of the demo's own repository
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.SetOutput(stderr)
	return fl
}
