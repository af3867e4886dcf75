package vsphere

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

// baseFolder is the fleet folder of the tests.
const baseFolder = "fleetd"

// testSize is a size every test clone uses: bigger than the template's disk.
var testSize = schema.MachineSize{CPUs: 2, MemoryMiB: 2048, DiskGiB: 20}

// sim is a simulator serving HTTPS on 127.0.0.1, with its certificate in a
// CA file, and an administrator's in-process client.
type sim struct {
	srv    *vcsimserver.Server
	caFile string
	admin  *vim25.Client
	logs   *logbuf.Buffer
}

func newSim(t testing.TB, o vcsimserver.Options) *sim {
	t.Helper()
	ctx := context.Background()
	srv, err := vcsimserver.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := srv.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	admin, err := srv.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &sim{srv: srv, caFile: caFile, admin: admin, logs: &logbuf.Buffer{}}
}

// config is a provider configuration for fleet on the simulator, trusting
// its certificate through the CA file.
func (s *sim) config(fleet string) Config {
	return Config{
		Fleet:    fleet,
		Name:     "dc1",
		Spec:     s.srv.Spec(baseFolder, "", s.caFile),
		Username: "fleetd@vsphere.local",
		Password: "s3cret-pass",
		Logger:   slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func (s *sim) provider(t testing.TB, cfg Config) *Provider {
	t.Helper()
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}

// adminFolder returns the folder at path below the datacenter's VM folder,
// made when missing, as an administrator outside fleetd.
func (s *sim) adminFolder(t testing.TB, parts ...string) *object.Folder {
	t.Helper()
	ctx := context.Background()
	finder := find.NewFinder(s.admin, false)
	dc, err := finder.Datacenter(ctx, vcsimserver.Datacenter)
	if err != nil {
		t.Fatal(err)
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := folders.VmFolder
	si := object.NewSearchIndex(s.admin)
	for _, part := range parts {
		child, err := si.FindChild(ctx, f, part)
		if err != nil {
			t.Fatal(err)
		}
		if child != nil {
			f = object.NewFolder(s.admin, child.Reference())
			continue
		}
		nf, err := f.CreateFolder(ctx, part)
		if err != nil && !fault.Is(err, &types.DuplicateName{}) {
			t.Fatal(err)
		}
		if err != nil {
			child, _ = si.FindChild(ctx, f, part)
			nf = object.NewFolder(s.admin, child.Reference())
		}
		f = nf
	}
	return f
}

// createForeign clones the template into folder outside fleetd: no marks,
// or the extra config given.
func (s *sim) createForeign(t testing.TB, folder *object.Folder, name string, extra ...types.BaseOptionValue) types.ManagedObjectReference {
	t.Helper()
	ctx := context.Background()
	finder := find.NewFinder(s.admin, true)
	tmpl, err := finder.VirtualMachine(ctx, "/"+vcsimserver.Datacenter+"/vm/"+s.srv.Template)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := finder.ResourcePool(ctx, vcsimserver.ResourcePool)
	if err != nil {
		t.Fatal(err)
	}
	pref := pool.Reference()
	spec := types.VirtualMachineCloneSpec{Location: types.VirtualMachineRelocateSpec{Pool: &pref}}
	if len(extra) > 0 {
		spec.Config = &types.VirtualMachineConfigSpec{ExtraConfig: extra}
	}
	task, err := tmpl.Clone(ctx, folder, name, spec)
	if err != nil {
		t.Fatal(err)
	}
	info, err := task.WaitForResult(ctx)
	if err != nil {
		t.Fatalf("clone foreign %s: %v", name, err)
	}
	return info.Result.(types.ManagedObjectReference)
}

// vm reads a VM as an administrator; nil when it does not exist.
func (s *sim) vm(t testing.TB, id string) *mo.VirtualMachine {
	t.Helper()
	var o mo.VirtualMachine
	err := property.DefaultCollector(s.admin).RetrieveOne(context.Background(),
		types.ManagedObjectReference{Type: "VirtualMachine", Value: id},
		[]string{"name", "parent", "config", "runtime.powerState"}, &o)
	if err != nil {
		if fault.Is(err, &types.ManagedObjectNotFound{}) {
			return nil
		}
		t.Fatal(err)
	}
	return &o
}

// extra returns a VM's ExtraConfig as a map.
func extra(vm *mo.VirtualMachine) map[string]string {
	out := map[string]string{}
	if vm == nil || vm.Config == nil {
		return out
	}
	for _, o := range vm.Config.ExtraConfig {
		v := o.GetOptionValue()
		s, _ := v.Value.(string)
		out[v.Key] = s
	}
	return out
}

func vcsimserverOptions() vcsimserver.Options { return vcsimserver.Options{} }

// seed makes marked VMs for specs directly in the simulator, as Create
// would name and mark them (see providertest.Harness.Seed).
func (s *sim) seed(t *testing.T, fleet string, specs []reconcile.MachineSpec) []string {
	t.Helper()
	vms := make([]vcsimserver.SeedVM, len(specs))
	for i, sp := range specs {
		vms[i] = vcsimserver.SeedVM{
			Folder: baseFolder + "/" + sp.Team + "/" + sp.Cluster,
			Name:   sp.Name,
			ExtraConfig: map[string]string{
				KeyFleet: fleet, KeyCluster: sp.Cluster, KeyTeam: sp.Team, KeyPool: sp.Pool,
				KeyTemplateHash: sp.TemplateHash, KeyProvider: "dc1",
			},
		}
	}
	ids, err := s.srv.Seed(context.Background(), vms)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}
