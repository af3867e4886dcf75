package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/internal/testenv/kubetest"
	"github.com/fleetd/fleetd/internal/testenv/rancherstandin"
	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
	"github.com/fleetd/fleetd/schema"
)

// sandboxVCenterUser is the vCenter simulator's login; the simulator takes any.
const sandboxVCenterUser = "fleetd:sandbox"

// sandboxAWSProfile is the AWS profile the sandbox writes for the EC2 server.
const sandboxAWSProfile = "fleetd-sandbox"

// Sandbox is everything `fleetd run`, `fleetd apply` and `fleetd plan
// --observed=live` need, on 127.0.0.1: the vCenter simulator over TLS, the
// EC2 protocol server, and a bare git repository seeded with a fleet whose
// provider endpoints point at them. Machines boot by themselves: an EC2
// instance runs a moment after it is launched.
type Sandbox struct {
	// Dir holds the sandbox's files; Close removes it when the sandbox made it.
	Dir string
	// Remote is the bare fleet repository (FLEETD_REPO).
	Remote string
	// Work is a clone of Remote that people commit to and push from.
	Work string
	EC2  *ec2test.Server
	VC   *vcsimserver.Server
	// Env are the shell assignments that point fleetd at the sandbox.
	Env map[string]string
	// Notes say what the sandbox left out, such as the rancher block.
	Notes []string

	// RancherURL is the Rancher stand-in's URL; "" without Rancher.
	RancherURL string

	kube      *kubetest.Env
	rancher   *rancherstandin.Rancher
	removeDir bool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// SandboxOptions configure StartSandbox.
type SandboxOptions struct {
	// FleetDir is the fleet to seed the repository with.
	FleetDir string
	// Dir keeps the sandbox's files (default: a temporary directory removed
	// by Close).
	Dir string
	// Boot is how long an EC2 instance takes to run (default 2s).
	Boot time.Duration
	// Rancher says whether to play Rancher for a fleet with a rancher
	// block: RancherAuto when the test kube-apiserver is built already,
	// RancherBuild building it first (minutes, once), RancherOff never.
	Rancher RancherMode
	// Progress receives the apiserver build's progress.
	Progress io.Writer
	Log      *slog.Logger
}

// RancherMode says when the sandbox plays Rancher.
type RancherMode int

// Rancher modes.
const (
	RancherAuto RancherMode = iota
	RancherBuild
	RancherOff
)

// sandboxRancherTokenEnv holds the stand-in's API token in the sandbox's
// environment; the seeded fleet.yaml names it.
const sandboxRancherTokenEnv = "FLEETD_SANDBOX_RANCHER_TOKEN"

// StartSandbox starts the simulators and seeds the repository.
func StartSandbox(ctx context.Context, o SandboxOptions) (_ *Sandbox, err error) {
	sb := &Sandbox{Dir: o.Dir, Env: map[string]string{}}
	if sb.Dir == "" {
		if sb.Dir, err = os.MkdirTemp("", "fleetd-sandbox-"); err != nil {
			return nil, err
		}
		sb.removeDir = true
	}
	defer func() {
		if err != nil {
			sb.Close()
		}
	}()
	src, err := os.ReadFile(filepath.Join(o.FleetDir, schema.FleetFile))
	if err != nil {
		return nil, err
	}
	fleet, diags := schema.Load(os.DirFS(o.FleetDir))
	if fleet == nil {
		return nil, fmt.Errorf("%s is not a valid fleet:\n%s", o.FleetDir, diags.Error())
	}

	sb.EC2 = ec2test.New()
	var template string
	for _, p := range fleet.Spec.Providers {
		if p.VSphere != nil {
			template = p.VSphere.Template
		}
	}
	if sb.VC, err = vcsimserver.Start(ctx, vcsimserver.Options{Template: template}); err != nil {
		return nil, fmt.Errorf("vCenter simulator: %w", err)
	}
	caFile := filepath.Join(sb.Dir, "vcenter-ca.pem")
	if err := sb.VC.WriteCA(caFile); err != nil {
		return nil, err
	}
	region := ""
	for _, p := range fleet.Spec.Providers {
		switch {
		case p.AWS != nil:
			region = p.AWS.Region
			if name, ok := strings.CutPrefix(p.AWS.Credentials, "env:"); ok {
				// The variable names an AWS profile: the sandbox's.
				sb.Env[name] = sandboxAWSProfile
			}
			for i, subnet := range p.AWS.Subnets {
				sb.EC2.AddSubnet(subnet, p.AWS.Region+string(rune('a'+i%3)))
			}
			for _, image := range awsImages(fleet, p) {
				sb.EC2.AddImage(image, "/dev/sda1")
			}
		case p.VSphere != nil:
			if name, ok := strings.CutPrefix(p.VSphere.Credentials, "env:"); ok {
				sb.Env[name] = sandboxVCenterUser
			}
		}
	}
	var rancherBlock map[string]string
	if fleet.Spec.Rancher != nil {
		rb, note, err := sb.startRancher(ctx, o, fleet)
		if err != nil {
			return nil, err
		}
		rancherBlock = rb
		if note != "" {
			sb.Notes = append(sb.Notes, note)
		}
	}
	seeded, err := sandboxFleetYAML(src, sb.VC, caFile, rancherBlock)
	if err != nil {
		return nil, err
	}

	sb.Work = filepath.Join(sb.Dir, "fleet-repo")
	if err := os.CopyFS(sb.Work, os.DirFS(o.FleetDir)); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(sb.Work, schema.FleetFile), seeded, 0o644); err != nil { //nolint:gosec // the sandbox's own copy
		return nil, err
	}
	sb.Remote = filepath.Join(sb.Dir, "fleet.git")
	for _, args := range [][]string{
		{"-C", sb.Work, "init", "-q", "-b", "main"},
		{"-C", sb.Work, "add", "-A"},
		{"-C", sb.Work, "commit", "-q", "-m", "Add the fleet"},
		{"clone", "-q", "--bare", sb.Work, sb.Remote},
		{"-C", sb.Work, "remote", "add", "origin", sb.Remote},
		{"-C", sb.Work, "fetch", "-q", "origin"},
		{"-C", sb.Work, "branch", "-q", "--set-upstream-to=origin/main", "main"},
	} {
		if err := sandboxGit(ctx, args...); err != nil {
			return nil, err
		}
	}

	for k, v := range map[string]string{
		"FLEETD_REPO":                 sb.Remote,
		"FLEETD_BRANCH":               "main",
		"AWS_ENDPOINT_URL_EC2":        sb.EC2.URL,
		"AWS_ACCESS_KEY_ID":           ec2test.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":       ec2test.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             filepath.Join(sb.Dir, "aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(sb.Dir, "aws-credentials"),
	} {
		sb.Env[k] = v
	}
	if region != "" {
		sb.Env["AWS_REGION"] = region
	}
	// A profile for providers whose credentials name one; the others use
	// the keys in the environment.
	profile := fmt.Sprintf("[profile %s]\nregion = %s\n", sandboxAWSProfile, region)
	creds := fmt.Sprintf("[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", sandboxAWSProfile, ec2test.AccessKeyID, ec2test.SecretAccessKey)
	if err := os.WriteFile(sb.Env["AWS_CONFIG_FILE"], []byte(profile), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(sb.Env["AWS_SHARED_CREDENTIALS_FILE"], []byte(creds), 0o600); err != nil {
		return nil, err
	}

	// Instances boot and terminate by themselves, as EC2's do.
	boot := o.Boot
	if boot == 0 {
		boot = 2 * time.Second
	}
	bctx, cancel := context.WithCancel(context.Background())
	sb.cancel = cancel
	sb.wg.Go(func() { sb.lifecycle(bctx, boot) })
	if sb.rancher != nil {
		sb.wg.Go(func() { sb.agents(bctx, boot, o.Log) })
	}
	return sb, nil
}

// startRancher starts the test kube-apiserver and the Rancher stand-in when
// the mode allows, and returns the rancher block for fleet.yaml; without
// them it returns a note saying the block is left out.
func (sb *Sandbox) startRancher(ctx context.Context, o SandboxOptions, fleet *schema.Fleet) (map[string]string, string, error) {
	if o.Rancher == RancherOff {
		return nil, "the fleet's rancher block is left out (--rancher=off)", nil
	}
	var assets string
	switch {
	case os.Getenv(kubetest.AssetsEnv) != "":
		a, err := kubetest.FindAssets()
		if err != nil {
			return nil, "", err
		}
		assets = a
	case o.Rancher == RancherBuild:
		root, err := repoRoot()
		if err != nil {
			return nil, "", err
		}
		if assets, err = kubetest.EnsureAssets(ctx, root, cmp.Or[io.Writer](o.Progress, io.Discard)); err != nil {
			return nil, "", err
		}
	default:
		assets = cachedKubeAssets()
		if assets == "" {
			return nil, "the fleet's rancher block is left out: the test kube-apiserver is not built yet (make kube-tools, or up --rancher builds it)", nil
		}
	}
	env, err := kubetest.Start(ctx, kubetest.Options{AssetsDir: assets})
	if err != nil {
		return nil, "", fmt.Errorf("test kube-apiserver: %w", err)
	}
	sb.kube = env
	rs, err := rancherstandin.Start(ctx, env, rancherstandin.Options{Namespace: cmp.Or(fleet.Spec.Rancher.Namespace, schema.DefaultRancherNamespace)})
	if err != nil {
		return nil, "", fmt.Errorf("Rancher stand-in: %w", err)
	}
	sb.rancher = rs
	ca := filepath.Join(sb.Dir, "rancher-ca.pem")
	if err := os.WriteFile(ca, rs.CAPEM, 0o600); err != nil {
		return nil, "", err
	}
	sb.Env[sandboxRancherTokenEnv] = rs.Token
	sb.Env["KUBECONFIG"] = env.KubeconfigPath
	sb.RancherURL = rs.URL
	return map[string]string{"url": rs.URL, "token": "env:" + sandboxRancherTokenEnv, "caFile": ca}, "", nil
}

// agents plays the machines' Rancher agents: every running VM and instance
// runs its cloud-init node command and registers.
func (sb *Sandbox) agents(ctx context.Context, every time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		vim, err := sb.VC.Client(ctx)
		if err != nil {
			continue
		}
		vms, err := rancherstandin.VSphereVMs(ctx, vim)
		if err != nil {
			log.Warn("Cannot list VMs", "error", err)
			continue
		}
		for _, in := range sb.EC2.Instances() {
			ud, err := base64.StdEncoding.DecodeString(in.UserData)
			if err != nil {
				continue
			}
			vms = append(vms, rancherstandin.VM{Name: in.ID, On: in.State == ec2test.StateRunning, UserData: ud})
		}
		if _, err := sb.rancher.SyncAgents(ctx, vms); err != nil && ctx.Err() == nil {
			log.Warn("An agent could not register", "error", err)
		}
	}
}

// cachedKubeAssets returns a built kube-apiserver and etcd in the user
// cache that hack/kube-tools/build.sh fills, or "".
func cachedKubeAssets() string {
	cache, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	dirs, _ := filepath.Glob(filepath.Join(cache, "fleetd", "kube-tools", "kube-apiserver-*"))
	slices.Sort(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		_, e1 := os.Stat(filepath.Join(dirs[i], "kube-apiserver"))
		_, e2 := os.Stat(filepath.Join(dirs[i], "etcd"))
		if e1 == nil && e2 == nil {
			return dirs[i]
		}
	}
	return ""
}

// lifecycle moves EC2 instances through their states: pending ones run and
// shutting-down ones are terminated, every boot interval.
func (sb *Sandbox) lifecycle(ctx context.Context, boot time.Duration) {
	t := time.NewTicker(boot)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, in := range sb.EC2.Instances() {
			switch in.State {
			case ec2test.StatePending:
				_ = sb.EC2.SetState(in.ID, ec2test.StateRunning)
			case ec2test.StateShuttingDown:
				_ = sb.EC2.SetState(in.ID, ec2test.StateTerminated)
			}
		}
	}
}

// Close stops the simulators and removes what the sandbox made.
func (sb *Sandbox) Close() {
	if sb.cancel != nil {
		sb.cancel()
	}
	sb.wg.Wait()
	if sb.EC2 != nil {
		sb.EC2.Close()
	}
	if sb.VC != nil {
		sb.VC.Close()
	}
	if sb.rancher != nil {
		sb.rancher.Stop()
	}
	if sb.kube != nil {
		sb.kube.Stop()
	}
	if sb.removeDir {
		_ = os.RemoveAll(sb.Dir)
	}
}

// WriteEnv writes the sandbox's shell assignments to path.
func (sb *Sandbox) WriteEnv(path string) error {
	var b strings.Builder
	b.WriteString("# fleetd sandbox: source this file, then run fleetd run, apply or plan --observed=live\n")
	keys := make([]string, 0, len(sb.Env))
	for k := range sb.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(sb.Env[k]))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// Environ returns os.Environ() with the sandbox's assignments.
func (sb *Sandbox) Environ() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		_, ours := sb.Env[k]
		return ours
	})
	for k, v := range sb.Env {
		env = append(env, k+"="+v)
	}
	return env
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// sandboxFleetYAML points the vsphere blocks of fleet.yaml at the simulator
// and the rancher block at the stand-in (rancher nil drops it), keeping the
// rest of the file, comments included.
func sandboxFleetYAML(src []byte, vc *vcsimserver.Server, caFile string, rancher map[string]string) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("fleet.yaml is not a mapping")
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "rancher":
			if rancher == nil {
				root.Content = slices.Delete(root.Content, i, i+2)
				i -= 2
				continue
			}
			for k, v := range rancher {
				setKey(root.Content[i+1], k, v)
			}
		case "providers":
			for _, p := range root.Content[i+1].Content {
				vs := mapValue(p, "vsphere")
				if vs == nil {
					continue
				}
				spec := vc.Spec(scalar(mapValue(vs, "folder")), "", caFile)
				for _, drop := range []string{"resourcePool", "insecure"} {
					deleteKey(vs, drop)
				}
				for k, v := range map[string]string{
					"server": spec.Server, "datacenter": spec.Datacenter, "computeCluster": spec.ComputeCluster,
					"datastore": spec.Datastore, "network": spec.Network, "template": spec.Template, "caFile": caFile,
				} {
					setKey(vs, k, v)
				}
			}
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), enc.Close()
}

func mapValue(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalar(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	return n.Value
}

func deleteKey(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = slices.Delete(m.Content, i, i+2)
			return
		}
	}
}

func setKey(m *yaml.Node, key, value string) {
	if v := mapValue(m, key); v != nil {
		v.Kind, v.Tag, v.Value, v.Style = yaml.ScalarNode, "!!str", value, 0
		return
	}
	m.Content = append(m.Content,
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key},
		&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value})
}

func sandboxGit(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=Ada Platform", "GIT_AUTHOR_EMAIL=ada@acme.example",
		"GIT_COMMITTER_NAME=Ada Platform", "GIT_COMMITTER_EMAIL=ada@acme.example",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out.String())
	}
	return nil
}

// up runs `fleetd-demo up`: it starts the sandbox, writes the environment
// file, says how to use it, and runs until interrupted.
func up(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := newFlagSet("fleetd-demo up", stderr)
	envFile := fl.String("env-file", "fleetd-sandbox.env", "write the shell assignments that point fleetd at the sandbox here")
	withRancher := fl.String("rancher", "auto", "play Rancher with the test kube-apiserver: auto (when built), build (build it first: minutes, once) or off")
	if err := fl.Parse(args); err != nil {
		return err
	}
	src := "examples/fleet-repo"
	if fl.NArg() > 0 {
		src = fl.Arg(0)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mode := map[string]RancherMode{"auto": RancherAuto, "build": RancherBuild, "off": RancherOff}
	rm, ok := mode[*withRancher]
	if !ok {
		return fmt.Errorf("--rancher %q: want auto, build or off", *withRancher)
	}
	if rm == RancherBuild {
		fmt.Fprintln(stdout, "Building the test kube-apiserver and etcd if they are not cached (about 9 minutes the first time)")
	}
	sb, err := StartSandbox(ctx, SandboxOptions{FleetDir: src, Log: log, Rancher: rm, Progress: stderr})
	if err != nil {
		return err
	}
	defer sb.Close()
	if err := sb.WriteEnv(*envFile); err != nil {
		return err
	}
	defer func() { _ = os.Remove(*envFile) }()
	fmt.Fprintf(stdout, "fleetd sandbox is up, on 127.0.0.1:\n")
	fmt.Fprintf(stdout, "  vCenter simulator  %s\n  EC2 endpoint       %s\n  fleet repository   %s (seeded from %s)\n  a clone to push to %s\n",
		sb.VC.URL, sb.EC2.URL, sb.Remote, src, sb.Work)
	if sb.RancherURL != "" {
		fmt.Fprintf(stdout, "  Rancher (stand-in) %s, on a real kube-apiserver (KUBECONFIG in the environment file)\n", sb.RancherURL)
	}
	for _, n := range sb.Notes {
		fmt.Fprintf(stdout, "  note: %s\n", n)
	}
	fmt.Fprintf(stdout, `
In another terminal:
  . %[1]s
  bin/fleetd run --work-dir /tmp/fleetd-work --listen 127.0.0.1:8080 --log-format text
or one sync at a time:
  . %[1]s
  git clone -q "$FLEETD_REPO" /tmp/fleet && bin/fleetd apply /tmp/fleet
Change the fleet in %[2]s, commit and git push; fleetd converges it.
Interrupt this command (Ctrl-C) to stop the sandbox: it leaves nothing behind.
`, *envFile, sb.Work)
	<-ctx.Done()
	fmt.Fprintln(stdout, "Stopping the sandbox")
	return nil
}
