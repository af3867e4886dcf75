package vsphere

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
	"github.com/fleetd/fleetd/reconcile"
)

const secretUserData = "#cloud-config\nruncmd: [register --token sekrit-registration-token]\n"

func spec(cluster, pool string, n int) reconcile.MachineSpec {
	return reconcile.MachineSpec{
		Name:         fmt.Sprintf("%s-%s-abcde-%d", cluster, pool, n),
		Cluster:      cluster,
		Team:         "payments",
		Pool:         pool,
		TemplateHash: "abcde",
		Size:         testSize,
		UserData:     []byte(secretUserData),
	}
}

// noLeak fails when err or the logs carry user data or the password.
func noLeak(t *testing.T, s *sim, err error) {
	t.Helper()
	for what, text := range map[string]string{"error": fmt.Sprint(err), "logs": s.logs.String()} {
		for _, secret := range []string{"sekrit-registration-token", base64.StdEncoding.EncodeToString([]byte(secretUserData)), "s3cret-pass"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s reveal a secret: %q", what, secret)
			}
		}
	}
}

func TestCreateClonesAsSpecified(t *testing.T) {
	s := newSim(t, vcsimserver.Options{})
	p := s.provider(t, s.config("acme"))
	ctx := t.Context()
	sp := spec("prod", "workers", 0)
	ms, err := p.Create(ctx, []reconcile.MachineSpec{sp})
	noLeak(t, s, err)
	if err != nil {
		t.Fatal(err)
	}
	vm := s.vm(t, ms[0].ID)
	if vm == nil {
		t.Fatalf("VM %s does not exist", ms[0].ID)
	}
	if got, err := find.InventoryPath(ctx, s.admin, vm.Self); err != nil || got != "/DC0/vm/fleetd/payments/prod/"+sp.Name {
		t.Errorf("VM at %q (%v), want /DC0/vm/fleetd/payments/prod/%s", got, err, sp.Name)
	}
	hw := vm.Config.Hardware
	if hw.NumCPU != 2 || hw.MemoryMB != 2048 {
		t.Errorf("hardware: %d CPUs, %d MiB; want 2, 2048", hw.NumCPU, hw.MemoryMB)
	}
	devices := object.VirtualDeviceList(hw.Device)
	disks := devices.SelectByType((*types.VirtualDisk)(nil))
	if len(disks) == 0 || disks[0].(*types.VirtualDisk).CapacityInBytes != 20*gib {
		t.Errorf("disks: %v, want the first of 20 GiB", disks)
	}
	nics := devices.SelectByType((*types.VirtualEthernetCard)(nil))
	if len(nics) == 0 {
		t.Fatal("no network card")
	}
	pg, err := find.NewFinder(s.admin, true).Network(ctx, "/DC0/network/"+vcsimserver.Network)
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := nics[0].GetVirtualDevice().Backing.(*types.VirtualEthernetCardDistributedVirtualPortBackingInfo); !ok || b.Port.PortgroupKey != pg.Reference().Value {
		t.Errorf("network backing %#v, want port group %s", nics[0].GetVirtualDevice().Backing, pg.Reference().Value)
	}
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		t.Errorf("power state %s, want poweredOn", vm.Runtime.PowerState)
	}
	ec := extra(vm)
	want := map[string]string{
		KeyFleet: "acme", KeyCluster: "prod", KeyTeam: "payments", KeyPool: "workers", KeyTemplateHash: "abcde",
		KeyProvider: "dc1", "guestinfo.userdata.encoding": "base64", "guestinfo.metadata.encoding": "base64",
	}
	for k, v := range want {
		if ec[k] != v {
			t.Errorf("ExtraConfig %s = %q, want %q", k, ec[k], v)
		}
	}
	if ud, _ := base64.StdEncoding.DecodeString(ec["guestinfo.userdata"]); string(ud) != secretUserData {
		t.Errorf("guestinfo.userdata decodes to %q", ud)
	}
	if md, _ := base64.StdEncoding.DecodeString(ec["guestinfo.metadata"]); !strings.Contains(string(md), "local-hostname: "+sp.Name) {
		t.Errorf("guestinfo.metadata decodes to %q, want the hostname", md)
	}
	noLeak(t, s, nil)
}

func TestCreateRefusesUnmarkedNamesake(t *testing.T) {
	s := newSim(t, vcsimserver.Options{})
	p := s.provider(t, s.config("acme"))
	sp := spec("prod", "workers", 0)
	// A person made a VM of the machine's name in the cluster's folder.
	foreign := s.createForeign(t, s.adminFolder(t, baseFolder, "payments", "prod"), sp.Name)
	ms, err := p.Create(t.Context(), []reconcile.MachineSpec{sp, spec("prod", "workers", 1)})
	if err == nil || !strings.Contains(err.Error(), sp.Name) || !strings.Contains(err.Error(), "without the marks") {
		t.Fatalf("Create over an unmarked namesake: %v, want a refusal naming it", err)
	}
	if len(ms) != 1 || ms[0].Name != spec("prod", "workers", 1).Name {
		t.Errorf("Create returned %+v, want only the other machine", ms)
	}
	if vm := s.vm(t, foreign.Value); vm == nil || len(extra(vm)[KeyFleet]) != 0 {
		t.Errorf("the unmarked VM was changed or removed")
	}
	if err := p.Delete(t.Context(), []string{foreign.Value}); err == nil {
		t.Errorf("Delete of the unmarked VM: no error")
	}
	if s.vm(t, foreign.Value) == nil {
		t.Errorf("Delete removed the unmarked VM")
	}
}

func TestDeleteRefusesTemplate(t *testing.T) {
	s := newSim(t, vcsimserver.Options{})
	ctx := t.Context()
	// Even a template that carries the fleet's marks is never a machine.
	ref := s.createForeign(t, s.adminFolder(t, baseFolder), "marked-template",
		&types.OptionValue{Key: KeyFleet, Value: "acme"}, &types.OptionValue{Key: KeyCluster, Value: "prod"})
	if err := object.NewVirtualMachine(s.admin, ref).MarkAsTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	p := s.provider(t, s.config("acme"))
	if ms, err := p.List(ctx); err != nil || len(ms) != 0 {
		t.Errorf("List: %+v, %v; want no machines (a template is none)", ms, err)
	}
	if err := p.Delete(ctx, []string{ref.Value}); err == nil || !strings.Contains(err.Error(), "template") {
		t.Errorf("Delete of the template: %v, want a refusal", err)
	}
	if s.vm(t, ref.Value) == nil {
		t.Fatal("the template is gone")
	}
}

// TestCloneTaskFailsAfterCreatingTheVM makes the clone task fail in vCenter
// after the VM exists: every host of the cluster is in maintenance mode, so
// the clone's power-on fails. The error names the VM and carries vCenter's
// fault, the VM that is left carries the marks (they are in the clone spec),
// and a later Create or Delete finds it.
func TestCloneTaskFailsAfterCreatingTheVM(t *testing.T) {
	s := newSim(t, vcsimserver.Options{})
	p := s.provider(t, s.config("acme"))
	ctx := t.Context()
	sp := spec("prod", "workers", 0)
	s.maintenance(t, true)

	ms, err := p.Create(ctx, []reconcile.MachineSpec{sp})
	noLeak(t, s, err)
	if err == nil {
		t.Fatal("Create: no error although the power-on failed")
	}
	t.Logf("Create: %v", err)
	var verr *Error
	if !errors.As(err, &verr) || verr.Object != sp.Name || !strings.Contains(err.Error(), "InvalidState") {
		t.Errorf("error %q: want the VM's name and the vCenter fault", err)
	}
	if reconcile.Classify(err) == reconcile.ReactRetry {
		t.Errorf("error %q marked transient", err)
	}
	if len(ms) != 1 || ms[0].State != reconcile.MachineStopped {
		t.Errorf("Create returned %+v, want the stopped machine that exists", ms)
	}
	s.checkNoUnmarked(t)
	listed, err := p.List(ctx)
	if err != nil || len(listed) != 1 || listed[0].State != reconcile.MachineStopped || listed[0].Pool != "workers" {
		t.Fatalf("List: %+v, %v; want the stopped, marked machine", listed, err)
	}

	s.maintenance(t, false)
	again, err := p.Create(ctx, []reconcile.MachineSpec{sp})
	if err != nil || len(again) != 1 || again[0].ID != listed[0].ID {
		t.Fatalf("Create again: %+v, %v; want the existing machine, no twin", again, err)
	}
	if err := p.Delete(ctx, []string{again[0].ID}); err != nil {
		t.Fatal(err)
	}
}

// maintenance puts every host of the compute cluster into maintenance mode,
// or takes them out.
func (s *sim) maintenance(t *testing.T, on bool) {
	t.Helper()
	ctx := context.Background()
	hosts, err := find.NewFinder(s.admin, true).HostSystemList(ctx, "/DC0/host/"+vcsimserver.ComputeCluster+"/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		var task *object.Task
		if on {
			task, err = h.EnterMaintenanceMode(ctx, 0, false, nil)
		} else {
			task, err = h.ExitMaintenanceMode(ctx, 0)
		}
		if err == nil {
			err = task.Wait(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkNoUnmarked fails when any VM below the base folder lacks the marks.
func (s *sim) checkNoUnmarked(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	vms, err := find.NewFinder(s.admin, true).VirtualMachineList(ctx, "/DC0/vm/"+baseFolder+"/...")
	if err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatal(err)
	}
	for _, vm := range vms {
		if o := s.vm(t, vm.Reference().Value); o != nil && extra(o)[KeyFleet] == "" {
			t.Errorf("VM %s (%s) has no marks", o.Name, vm.Reference().Value)
		}
	}
}

// TestTransientFaultIsReturnedNotRetried pins that a clone failing with a
// transient fault is not cloned again inside Create: the sync retries it
// with backoff, and the next Create makes the machine.
func TestTransientFaultIsReturnedNotRetried(t *testing.T) {
	s := newSim(t, vcsimserver.Options{})
	s.srv.Model().Service.AddFaultRule(&simulator.FaultInjectionRule{
		MethodName: "CloneVM_Task", ObjectType: "*", ObjectName: "*", Probability: 1, MaxCount: 1, Enabled: true,
		FaultType: simulator.FaultTypeCustom, Fault: &types.HostCommunication{},
		Message: "Host DC0_C0_H1 is not responding",
	})
	p := s.provider(t, s.config("acme"))
	sp := spec("prod", "workers", 0)
	_, err := p.Create(t.Context(), []reconcile.MachineSpec{sp})
	if reconcile.Classify(err) != reconcile.ReactRetry {
		t.Fatalf("Create with a HostCommunication fault: %v (reaction %v), want a transient error", err, reconcile.Classify(err))
	}
	if got := s.srv.RequestsByMethod()["CloneVM_Task"]; got != 1 {
		t.Errorf("%d clones, want 1: the provider must not retry on its own", got)
	}
	if !strings.Contains(s.logs.String(), "Host DC0_C0_H1 is not responding") {
		t.Errorf("the fault was not logged")
	}
	ms, err := p.Create(t.Context(), []reconcile.MachineSpec{sp})
	if err != nil || len(ms) != 1 {
		t.Fatalf("Create at the next sync: %+v, %v", ms, err)
	}
}

// TestFaultKinds classifies vCenter's faults, injected into the simulator,
// by their types: each kind of reaction from a real SOAP fault or task
// fault.
func TestFaultKinds(t *testing.T) {
	cases := []struct {
		name   string
		method string
		fault  types.BaseMethodFault
		want   reconcile.Reaction
	}{
		{"a host not responding", "CloneVM_Task", &types.HostCommunication{}, reconcile.ReactRetry},
		{"a host not connected", "CloneVM_Task", &types.HostNotConnected{}, reconcile.ReactRetry},
		{"concurrent access", "CloneVM_Task", &types.ConcurrentAccess{}, reconcile.ReactRetry},
		{"a task in progress", "CloneVM_Task", &types.TaskInProgress{}, reconcile.ReactRetry},
		{"no permission", "CloneVM_Task", &types.NoPermission{}, reconcile.ReactStall},
		{"insufficient resources", "CloneVM_Task", &types.InsufficientResourcesFault{}, reconcile.ReactFail},
		{"a power-off without permission", "PowerOffVM_Task", &types.NoPermission{}, reconcile.ReactStall},
		{"a destroy while the host is unreachable", "Destroy_Task", &types.HostNotReachable{}, reconcile.ReactRetry},
		{"a destroy of a VM in use", "Destroy_Task", &types.ResourceInUse{}, reconcile.ReactRetry},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, vcsimserver.Options{})
			p := s.provider(t, s.config("acme"))
			deleting := tc.method != "CloneVM_Task"
			var id string
			if deleting {
				ms, err := p.Create(t.Context(), []reconcile.MachineSpec{spec("prod", "workers", 0)})
				if err != nil {
					t.Fatal(err)
				}
				id = ms[0].ID
			}
			s.srv.Model().Service.AddFaultRule(&simulator.FaultInjectionRule{
				MethodName: tc.method, ObjectType: "*", ObjectName: "*", Probability: 1, Enabled: true,
				FaultType: simulator.FaultTypeCustom, Fault: tc.fault, Message: "injected",
			})
			var err error
			if deleting {
				err = p.Delete(t.Context(), []string{id})
			} else {
				_, err = p.Create(t.Context(), []reconcile.MachineSpec{spec("prod", "workers", 0)})
			}
			if got := reconcile.Classify(err); got != tc.want {
				t.Errorf("%v: reaction %v, want %v", err, got, tc.want)
			}
			var verr *Error
			if !errors.As(err, &verr) {
				t.Errorf("%v is not a *vsphere.Error", err)
			}
		})
	}
}

func TestPermanentFaultIsReported(t *testing.T) {
	s := newSim(t, vcsimserver.Options{})
	s.srv.Model().Service.AddFaultRule(&simulator.FaultInjectionRule{
		MethodName: "CloneVM_Task", ObjectType: "*", ObjectName: "*", Probability: 1, Enabled: true,
		FaultType: simulator.FaultTypeCustom, Fault: &types.InsufficientResourcesFault{},
		Message: "Insufficient memory resources on cluster DC0_C0",
	})
	p := s.provider(t, s.config("acme"))
	sp := spec("prod", "workers", 0)
	_, err := p.Create(t.Context(), []reconcile.MachineSpec{sp})
	noLeak(t, s, err)
	want := "vsphere: clone " + sp.Name + ": InsufficientResourcesFault: Insufficient memory resources on cluster DC0_C0"
	if err == nil || err.Error() != want {
		t.Fatalf("Create: %v\nwant %s", err, want)
	}
	if reconcile.Classify(err) != reconcile.ReactFail {
		t.Errorf("classified %v, want a plain failure", reconcile.Classify(err))
	}
	if got := s.srv.RequestsByMethod()["CloneVM_Task"]; got != 1 {
		t.Errorf("%d clones, want 1 (no retry of a permanent fault)", got)
	}
}

// TestHTTPStatusKinds answers SOAP calls with HTTP statuses, as an
// overloaded vCenter or a proxy in front of it does: the class comes from
// the status code the transport recorded, never from the message.
func TestHTTPStatusKinds(t *testing.T) {
	for _, tc := range []struct {
		code int
		want reconcile.Reaction
	}{
		{503, reconcile.ReactRetry},
		{429, reconcile.ReactRetry},
		{502, reconcile.ReactRetry},
		{504, reconcile.ReactRetry},
		{404, reconcile.ReactFail},
		{403, reconcile.ReactFail},
	} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			var overloaded atomic.Bool
			s := newSim(t, vcsimserver.Options{HTTPStatus: func(method string) int {
				if overloaded.Load() && method == "RetrievePropertiesEx" {
					return tc.code
				}
				return 0
			}})
			p := s.provider(t, s.config("acme"))
			if _, err := p.Create(t.Context(), []reconcile.MachineSpec{spec("prod", "workers", 0)}); err != nil {
				t.Fatal(err)
			}
			overloaded.Store(true)
			_, err := p.List(t.Context())
			t.Logf("List: %v", err)
			if got := reconcile.Classify(err); got != tc.want {
				t.Errorf("List answered %d: %v (reaction %v), want %v", tc.code, err, got, tc.want)
			}
			var hs *HTTPStatusError
			if !errors.As(err, &hs) || hs.Code != tc.code {
				t.Errorf("List answered %d: %v carries no HTTPStatusError of that code", tc.code, err)
			}
			noLeak(t, s, err)
		})
	}
}

// TestSlowClone gives up on a clone that vCenter carries on with: the error
// is transient, the VM appears with its marks, and the Create that retries
// at once (while the first clone still runs) makes no twin.
func TestSlowClone(t *testing.T) {
	// The deadline leaves room for the lookups before the clone on a loaded
	// machine; the clone outlasts it by far.
	s := newSim(t, vcsimserver.Options{MethodDelay: map[string]int{"CloneVM_Task": 3000}})
	p := s.provider(t, s.config("acme"))
	sp := spec("prod", "workers", 0)

	short, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	_, err := p.Create(short, []reconcile.MachineSpec{sp})
	if err == nil {
		t.Fatal("Create within 1.5s of a 3s clone: no error")
	}
	t.Logf("Create: %v", err)
	if reconcile.Classify(err) != reconcile.ReactRetry {
		t.Errorf("timeout %v classified %v, want transient", err, reconcile.Classify(err))
	}

	ms, err := p.Create(t.Context(), []reconcile.MachineSpec{sp})
	if err != nil || len(ms) != 1 {
		t.Fatalf("Create again: %v", err)
	}
	listed, err := p.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].ID != ms[0].ID {
		t.Fatalf("List: %+v, want exactly the one machine %s", listed, ms[0].ID)
	}
	if got := s.srv.RequestsByMethod()["CloneVM_Task"]; got != 2 {
		t.Errorf("%d clones, want 2 (the second lost to the first with DuplicateName)", got)
	}
	s.checkNoUnmarked(t)
}

func TestSessionExpiry(t *testing.T) {
	s := newSim(t, vcsimserver.Options{})
	p := s.provider(t, s.config("acme"))
	ctx := t.Context()
	if _, err := p.List(ctx); err != nil {
		t.Fatal(err)
	}
	expire := func() {
		t.Helper()
		if n, err := s.srv.TerminateSessions(ctx); err != nil || n == 0 {
			t.Fatalf("TerminateSessions: %d, %v", n, err)
		}
	}

	expire()
	ms, err := p.Create(ctx, []reconcile.MachineSpec{spec("prod", "workers", 0), spec("stage", "workers", 0)})
	if err != nil || len(ms) != 2 {
		t.Fatalf("Create after the session expired: %v", err)
	}
	if p.Logins() != 1 {
		t.Errorf("%d new logins, want 1", p.Logins())
	}

	expire()
	listed, err := p.List(ctx)
	if err != nil || len(listed) != 2 {
		t.Fatalf("List after the session expired: %d machines, %v", len(listed), err)
	}

	expire()
	if err := p.Delete(ctx, []string{ms[0].ID, ms[1].ID}); err != nil {
		t.Fatalf("Delete after the session expired: %v", err)
	}
	if p.Logins() != 3 {
		t.Errorf("%d new logins, want 3", p.Logins())
	}
	if listed, err := p.List(ctx); err != nil || len(listed) != 0 {
		t.Errorf("List after Delete: %d machines, %v", len(listed), err)
	}
}

func TestMaxInFlight(t *testing.T) {
	s := newSim(t, vcsimserver.Options{MethodDelay: map[string]int{"CloneVM_Task": 150}})
	cfg := s.config("acme")
	cfg.MaxInFlight = 3
	p := s.provider(t, cfg)
	var specs []reconcile.MachineSpec
	for i := range 10 {
		specs = append(specs, spec(fmt.Sprintf("c%d", i%4), "workers", i))
	}
	if _, err := p.Create(t.Context(), specs); err != nil {
		t.Fatal(err)
	}
	if peak := s.srv.PeakInFlight("CloneVM_Task"); peak > 3 || peak < 2 {
		t.Errorf("%d clones in flight at once, want 2 or 3 (MaxInFlight 3)", peak)
	}
}
