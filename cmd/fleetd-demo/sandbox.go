package main

import (
	"bytes"
	"context"
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

	"github.com/fleetd/fleetd/internal/vcsimserver"
	"github.com/fleetd/fleetd/providers/aws/ec2test"
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
	Log  *slog.Logger
}

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
	seeded, notes, err := sandboxFleetYAML(src, sb.VC, caFile)
	if err != nil {
		return nil, err
	}
	sb.Notes = notes

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
	return sb, nil
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
// and drops the rancher block (the sandbox has no Rancher), keeping the rest
// of the file, comments included.
func sandboxFleetYAML(src []byte, vc *vcsimserver.Server, caFile string) ([]byte, []string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, errors.New("fleet.yaml is not a mapping")
	}
	root := doc.Content[0]
	var notes []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "rancher":
			root.Content = slices.Delete(root.Content, i, i+2)
			i -= 2
			notes = append(notes, "the fleet's rancher block is left out: this sandbox has no Rancher")
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
		return nil, nil, err
	}
	return buf.Bytes(), notes, enc.Close()
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
	if err := fl.Parse(args); err != nil {
		return err
	}
	src := "examples/fleet-repo"
	if fl.NArg() > 0 {
		src = fl.Arg(0)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sb, err := StartSandbox(ctx, SandboxOptions{FleetDir: src, Log: log})
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
