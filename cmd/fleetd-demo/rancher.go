package main

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/fleetd/fleetd/internal/kube"
	"github.com/fleetd/fleetd/internal/rancher"
	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/internal/testenv/kubetest"
	"github.com/fleetd/fleetd/internal/testenv/rancherstandin"
	"github.com/fleetd/fleetd/schema"
)

// kubeRancher is Rancher played by the stand-in on a real kube-apiserver:
// fleetd's real registry and node access talk to it through Rancher's URL
// layout.
type kubeRancher struct {
	env *kubetest.Env
	rs  *rancherstandin.Rancher
}

// startKubeRancher starts etcd, kube-apiserver and the Rancher stand-in,
// building the binaries first when they are not cached (the first run), and
// points the world's Registry and Nodes at it.
func (d *demo) startKubeRancher(ctx context.Context, fleet *schema.Fleet) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if os.Getenv(kubetest.AssetsEnv) == "" {
		d.say("   Rancher: a real kube-apiserver with a Rancher stand-in; building kube-apiserver and etcd if they are not cached yet (the first run takes 9 to 15 minutes)")
	}
	assets, err := kubetest.EnsureAssets(ctx, root, d.progress)
	if err != nil {
		return err
	}
	start := time.Now()
	env, err := kubetest.Start(ctx, kubetest.Options{AssetsDir: assets})
	if err != nil {
		return err
	}
	ns := cmp.Or(fleet.Spec.Rancher.Namespace, schema.DefaultRancherNamespace)
	rs, err := rancherstandin.Start(ctx, env, rancherstandin.Options{Namespace: ns})
	if err != nil {
		env.Stop()
		return err
	}
	d.kube = &kubeRancher{env: env, rs: rs}
	spec := *fleet.Spec.Rancher
	spec.URL = rs.URL
	conn := rancher.NewConn(rs.URL, rs.Token, rs.CAPEM)
	reg, err := rancher.NewWithConn(ctx, rancher.Config{Fleet: fleet.Spec.Name, Spec: spec, Logger: d.log}, conn)
	if err != nil {
		return err
	}
	d.world.Registry = reg
	d.world.Nodes = kube.NewWithConn(kube.Config{Logger: d.log}, conn)
	d.say("   Rancher stand-in at %s (kube-apiserver %s, ready in %v)", rs.URL, env.URL, time.Since(start).Round(100*time.Millisecond))
	return nil
}

func (k *kubeRancher) stop() {
	k.rs.Stop()
	k.env.Stop()
}

// tickKube plays the machines' agents: every running VM and instance runs its
// cloud-init node command and registers; the stand-in's controllers then run.
func (d *demo) tickKube(ctx context.Context) {
	vim, err := d.vc.Client(ctx)
	if err != nil {
		d.log.Warn("Cannot reach the vCenter simulator", "error", err)
		return
	}
	vms, err := rancherstandin.VSphereVMs(ctx, vim)
	if err != nil {
		d.log.Warn("Cannot list VMs", "error", err)
		return
	}
	for _, in := range d.ec2.Instances() {
		ud, err := base64.StdEncoding.DecodeString(in.UserData)
		if err != nil {
			continue
		}
		vms = append(vms, rancherstandin.VM{Name: in.ID, On: in.State == ec2test.StateRunning, UserData: ud})
	}
	if _, err := d.kube.rs.SyncAgents(ctx, vms); err != nil {
		d.log.Warn("An agent could not register", "error", err)
	}
	// A simulated minute is long enough for Rancher's controllers to catch
	// up (an ID, a token, a node joining): run them until three steps in a
	// row succeed, as a step that races the stand-in's own loop for an
	// object fails and is retried.
	for i, clean := 0, 0; i < 20 && clean < 3; i++ {
		if d.kube.rs.Step(ctx) == nil {
			clean++
		} else {
			clean = 0
		}
	}
}

// repoRoot finds the repository root (where hack/kube-tools is) from the
// working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "kube-tools", "build.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find hack/kube-tools/build.sh above the working directory: run the demo from the fleetd repository, or set " + kubetest.AssetsEnv)
		}
		dir = parent
	}
}

// scaleDown shows a removal against the real apiserver: payments-prod goes
// back to 6 workers, each removed machine drained, its Rancher Machine
// deleted (the stand-in removes its node) and only then its VM deleted.
func (d *demo) scaleDown(ctx context.Context) error {
	d.say("\n== 4. payments-prod scales back to 6 workers: each machine is drained, its Rancher Machine deleted, then its VM")
	if err := d.edit("clusters/payments/payments-prod.yaml", "    replicas: 8", "    replicas: 6"); err != nil {
		return err
	}
	d.now = d.now.Add(10 * time.Minute)
	if err := d.commitAll(ctx, "payments: scale payments-prod back to 6 workers"); err != nil {
		return err
	}
	before := len(d.kube.rs.Events())
	if err := d.converge(ctx); err != nil {
		return err
	}
	for _, ev := range d.kube.rs.Events()[before:] {
		switch ev.Kind {
		case "node-deleted", "machine-deleted":
			d.say("   Rancher (stand-in): %s %s", ev.Kind, ev.Object)
		}
	}
	return nil
}
