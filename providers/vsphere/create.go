package vsphere

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/fleetd/fleetd/reconcile"
)

const gib = 1 << 30

// Create clones the machines of specs from their templates into
// <folder>/<team>/<cluster>, with the ownership marks and cloud-init data in
// the clone spec itself (so no VM ever exists unmarked), and powers them on.
//
// Create is idempotent by name: a VM of that name in the cluster folder that
// carries the fleet's marks is returned as it is and not cloned again; one
// without them is an error and is left alone. It returns the machines that
// exist afterwards in the order of specs; on a partial failure those that do
// exist, with the joined errors. User data never appears in logs or errors.
func (p *Provider) Create(ctx context.Context, specs []reconcile.MachineSpec) ([]reconcile.Machine, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	if err := validateSpecs(specs); err != nil {
		return nil, err
	}
	if err := p.connect(ctx); err != nil {
		return nil, err
	}
	inv, err := p.resolve(ctx)
	if err != nil {
		return nil, err
	}

	type group struct {
		team, cluster string
		idx           []int
	}
	var order []string
	groups := map[string]*group{}
	for i, s := range specs {
		k := s.Team + "/" + s.Cluster
		g, ok := groups[k]
		if !ok {
			g = &group{team: s.Team, cluster: s.Cluster}
			groups[k] = g
			order = append(order, k)
		}
		g.idx = append(g.idx, i)
	}

	results := make([]*reconcile.Machine, len(specs))
	errs := make([]error, len(specs)) // per spec; a repeated name's error is its first's
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		groupErrs []error
	)
	for _, k := range order {
		g := groups[k]
		wg.Go(func() {
			folder, err := p.clusterFolder(ctx, inv, g.team, g.cluster)
			var existing map[string]vmInfo
			if err == nil {
				existing, err = p.vmsInFolder(ctx, folder)
			}
			if err != nil {
				mu.Lock()
				groupErrs = append(groupErrs, wrap("create machines of cluster", g.cluster, err))
				mu.Unlock()
				return
			}
			first := map[string]int{}
			var cw sync.WaitGroup
			for _, i := range g.idx {
				s := specs[i]
				if _, dup := first[s.Name]; dup {
					continue
				}
				first[s.Name] = i
				if v, ok := existing[s.Name]; ok {
					results[i], errs[i] = p.adopt(v, s)
					continue
				}
				cw.Go(func() { results[i], errs[i] = p.clone(ctx, inv, folder, s) })
			}
			cw.Wait()
			for _, i := range g.idx {
				if j := first[specs[i].Name]; j != i {
					results[i] = results[j]
				}
			}
		})
	}
	wg.Wait()

	out := make([]reconcile.Machine, 0, len(specs))
	for _, m := range results {
		if m != nil {
			out = append(out, *m)
		}
	}
	return out, joinDistinct(append(groupErrs, errs...))
}

// joinDistinct joins errs, keeping one of each message: a failure that is
// not about one machine (a missing template) is reported once, not once per
// machine.
func joinDistinct(errs []error) error {
	seen := map[string]bool{}
	var out []error
	for _, err := range errs {
		if err == nil || seen[err.Error()] {
			continue
		}
		seen[err.Error()] = true
		out = append(out, err)
	}
	return errors.Join(out...)
}

func validateSpecs(specs []reconcile.MachineSpec) error {
	var errs []error
	for _, s := range specs {
		var missing []string
		for _, f := range []struct{ n, v string }{{"name", s.Name}, {"cluster", s.Cluster}, {"team", s.Team}, {"pool", s.Pool}} {
			if f.v == "" || strings.ContainsAny(f.v, "/\\%") {
				missing = append(missing, f.n)
			}
		}
		if len(missing) > 0 {
			errs = append(errs, fmt.Errorf("machine %q: %s empty or not a valid name", s.Name, strings.Join(missing, ", ")))
		}
		if s.Size.CPUs < 0 || s.Size.MemoryMiB < 0 || s.Size.DiskGiB < 0 {
			errs = append(errs, fmt.Errorf("machine %q: negative size", s.Name))
		}
	}
	if len(errs) > 0 {
		return reconcile.Stalled(fmt.Errorf("vsphere: create: %w", errors.Join(errs...)))
	}
	return nil
}

// adopt returns an existing VM of the spec's name: the fleet's own machine,
// or an error when it is someone else's.
func (p *Provider) adopt(v vmInfo, s reconcile.MachineSpec) (*reconcile.Machine, error) {
	if !v.owned(p.cfg.Fleet) {
		return nil, &Error{Op: "create", Object: s.Name, Err: fmt.Errorf(
			"a VM of that name (%s) without the marks of fleet %s is in the cluster folder; refusing to adopt or replace it", v.ref.Value, p.cfg.Fleet)}
	}
	if v.marks[KeyCluster] != s.Cluster || v.marks[KeyPool] != s.Pool {
		return nil, &Error{Op: "create", Object: s.Name, Err: fmt.Errorf(
			"the VM of that name (%s) belongs to cluster %q pool %q", v.ref.Value, v.marks[KeyCluster], v.marks[KeyPool])}
	}
	m := p.machine(v)
	return &m, nil
}

// clone makes one machine with one clone task. A clone that failed is not
// tried again here: the error goes back to the sync, which retries a
// transient one with backoff (the one retry layer above the transport), after
// the next List has shown whether the failed clone made the VM after all.
func (p *Provider) clone(ctx context.Context, inv *inventory, folder types.ManagedObjectReference, s reconcile.MachineSpec) (*reconcile.Machine, error) {
	tmplName := s.Size.Template
	if tmplName == "" {
		tmplName = p.cfg.Spec.Template
	}
	log := p.clusterLogger(ctx, s.Cluster).With("vm", s.Name, "team", s.Team, "pool", s.Pool)
	tmpl, err := p.template(ctx, inv, tmplName)
	if err != nil {
		return nil, err
	}
	spec, err := p.cloneSpec(inv, tmpl, s)
	if err != nil {
		return nil, err
	}
	m, err := p.cloneOnce(ctx, log, tmpl, folder, s, spec)
	if err == nil {
		return m, nil
	}
	if ctx.Err() != nil {
		// The clone may still finish in vCenter, marked; the next
		// Create finds it instead of making a twin.
		return nil, err
	}
	var mof *types.ManagedObjectNotFound
	if _, ok := fault.As(err, &mof); ok {
		// A cached folder or template is gone: look it up afresh next time.
		switch mof.Obj {
		case folder:
			p.forgetFolder(folder)
		case tmpl.ref:
			p.forgetTemplate(tmplName)
		}
	}
	// The clone failed, lost a race to another clone of the same name
	// (DuplicateName), or failed only to power on: whatever exists now
	// under that name decides.
	if m, found, rerr := p.recoverClone(ctx, folder, s, err); found {
		return m, rerr
	}
	log.Warn("Cloning VM failed", "error", err)
	return nil, err
}

// cloneOnce runs one clone task and waits for it.
func (p *Provider) cloneOnce(ctx context.Context, log *slog.Logger, tmpl *template, folder types.ManagedObjectReference, s reconcile.MachineSpec, spec types.VirtualMachineCloneSpec) (*reconcile.Machine, error) {
	if err := acquire(ctx, p.tasks); err != nil {
		return nil, wrap("clone", s.Name, err)
	}
	log.Info("Cloning VM", "template", tmpl.name)
	t, err := object.NewVirtualMachine(p.client, tmpl.ref).Clone(ctx, object.NewFolder(p.client, folder), s.Name, spec)
	var info *types.TaskInfo
	if err == nil {
		info, err = p.wait(ctx, t)
	}
	<-p.tasks
	if err != nil {
		return nil, redact(wrap("clone", s.Name, err), s)
	}
	ref, ok := info.Result.(types.ManagedObjectReference)
	if !ok {
		return nil, &Error{Op: "clone", Object: s.Name, Err: errors.New("the task's result is not a VM")}
	}
	created := time.Now()
	if info.CompleteTime != nil {
		created = *info.CompleteTime
	}
	return &reconcile.Machine{
		ID: ref.Value, Name: s.Name, Provider: p.cfg.Name,
		Cluster: s.Cluster, Team: s.Team, Pool: s.Pool, TemplateHash: s.TemplateHash,
		State: reconcile.MachineRunning, CreatedAt: created,
	}, nil
}

// redact keeps user data out of an error: should vCenter ever quote the
// clone spec in a fault, the fault's message is withheld (its type stays).
func redact(err error, s reconcile.MachineSpec) error {
	msg := err.Error()
	if len(s.UserData) == 0 || (!strings.Contains(msg, base64.StdEncoding.EncodeToString(s.UserData)) && !strings.Contains(msg, string(s.UserData))) {
		return err
	}
	return classify(&Error{Op: "clone", Object: s.Name, Fault: faultName(err),
		Err: errors.New("vCenter's message withheld: it quotes the user data")})
}

// recoverClone looks for the VM of a failed clone. The fleet's own VM is the
// machine (powered on if the clone left it off); another VM of that name
// keeps the clone's error. found says whether a VM of that name exists.
func (p *Provider) recoverClone(ctx context.Context, folder types.ManagedObjectReference, s reconcile.MachineSpec, cerr error) (_ *reconcile.Machine, found bool, _ error) {
	existing, err := p.vmsInFolder(ctx, folder)
	if err != nil {
		// Not knowing is not finding: the caller keeps the clone's error,
		// and the next sync's List looks again.
		p.logger(ctx).Warn("Cannot look for the VM of a failed clone", "vm", s.Name, "error", err)
		return nil, false, nil //nolint:nilerr // see above
	}
	v, ok := existing[s.Name]
	if !ok {
		return nil, false, nil
	}
	m, err := p.adopt(v, s)
	if err != nil {
		return nil, true, errors.Join(cerr, err)
	}
	if v.power == types.VirtualMachinePowerStatePoweredOff {
		if err := p.powerOn(ctx, v); err != nil {
			return m, true, errors.Join(cerr, err)
		}
		m.State = reconcile.MachineRunning
	}
	p.logger(ctx).Info("Found the VM of a failed clone; using it", "vm", s.Name, "id", v.ref.Value)
	return m, true, nil
}

func (p *Provider) powerOn(ctx context.Context, v vmInfo) error {
	if err := acquire(ctx, p.tasks); err != nil {
		return wrap("power on", v.name, err)
	}
	defer func() { <-p.tasks }()
	p.logger(ctx).Info("Powering on VM", "vm", v.name, "id", v.ref.Value)
	t, err := object.NewVirtualMachine(p.client, v.ref).PowerOn(ctx)
	if err == nil {
		_, err = p.wait(ctx, t)
	}
	if err != nil && !fault.Is(err, &types.InvalidPowerState{}) {
		return wrap("power on", v.name, err)
	}
	return nil
}

// cloneSpec is the clone of tmpl for s: placement, size, network, marks and
// cloud-init data, powered on at the end of the clone.
func (p *Provider) cloneSpec(inv *inventory, tmpl *template, s reconcile.MachineSpec) (types.VirtualMachineCloneSpec, error) {
	pool, ds := inv.pool, inv.datastore
	cfg := &types.VirtualMachineConfigSpec{
		NumCPUs:     int32(s.Size.CPUs),
		MemoryMB:    int64(s.Size.MemoryMiB),
		ExtraConfig: p.extraConfig(s),
	}
	if s.Size.DiskGiB > 0 {
		if tmpl.disk == nil {
			return types.VirtualMachineCloneSpec{}, reconcile.Stalled(&specError{msg: fmt.Sprintf("clone %s: template %s has no disk to size to %d GiB", s.Name, tmpl.name, s.Size.DiskGiB)})
		}
		want := int64(s.Size.DiskGiB) * gib
		have := tmpl.disk.CapacityInBytes
		if have == 0 {
			have = tmpl.disk.CapacityInKB * 1024
		}
		switch {
		case want < have:
			return types.VirtualMachineCloneSpec{}, reconcile.Stalled(&specError{msg: fmt.Sprintf(
				"clone %s: diskGiB %d is smaller than the %d GiB disk of template %s; disks only grow", s.Name, s.Size.DiskGiB, have/gib, tmpl.name)})
		case want > have:
			disk := *tmpl.disk
			disk.CapacityInBytes = want
			disk.CapacityInKB = want / 1024
			cfg.DeviceChange = append(cfg.DeviceChange, &types.VirtualDeviceConfigSpec{
				Operation: types.VirtualDeviceConfigSpecOperationEdit,
				Device:    &disk,
			})
		}
	}
	if tmpl.nic != nil {
		nic := copyCard(tmpl.nic)
		nic.GetVirtualEthernetCard().Backing = inv.network
		cfg.DeviceChange = append(cfg.DeviceChange, &types.VirtualDeviceConfigSpec{
			Operation: types.VirtualDeviceConfigSpecOperationEdit,
			Device:    nic.(types.BaseVirtualDevice),
		})
	}
	return types.VirtualMachineCloneSpec{
		Location: types.VirtualMachineRelocateSpec{Pool: &pool, Datastore: &ds},
		Config:   cfg,
		PowerOn:  true,
	}, nil
}

// copyCard copies a network card of any concrete type, so editing the copy
// leaves the cached template alone.
func copyCard(card types.BaseVirtualEthernetCard) types.BaseVirtualEthernetCard {
	v := reflect.ValueOf(card).Elem()
	c := reflect.New(v.Type())
	c.Elem().Set(v)
	return c.Interface().(types.BaseVirtualEthernetCard)
}
