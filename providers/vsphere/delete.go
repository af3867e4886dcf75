package vsphere

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"
)

// Delete powers off (hard) and destroys the VMs with the given managed object
// IDs. It first reads the marks of all of them in one retrieval: a VM that is
// gone is a success, a VM without the fleet's mark (or a template) is never
// touched and is reported as an error. Delete is idempotent; it returns the
// joined errors of the VMs it could not delete.
func (p *Provider) Delete(ctx context.Context, ids []string) error {
	var refs []types.ManagedObjectReference
	seen := map[string]bool{}
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			refs = append(refs, types.ManagedObjectReference{Type: "VirtualMachine", Value: id})
		}
	}
	if len(refs) == 0 {
		return nil
	}
	if err := p.connect(ctx); err != nil {
		return err
	}
	vms, err := p.retrieve(ctx, byRef(refs))
	if err != nil {
		return wrap("delete: read marks of", fmt.Sprintf("%d VMs", len(refs)), err)
	}
	found := map[string]vmInfo{}
	for _, v := range vms {
		found[v.ref.Value] = v
	}

	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, ref := range refs {
		v, ok := found[ref.Value]
		switch {
		case !ok || v.missing:
			p.logger(ctx).Debug("VM already gone", "id", ref.Value)
			continue
		case !v.owned(p.cfg.Fleet):
			what := "it lacks the mark of fleet " + p.cfg.Fleet
			if v.template {
				what = "it is a template"
			}
			errs = append(errs, &Error{Op: "delete", Object: fmt.Sprintf("%s (%s)", v.name, ref.Value),
				Err: errors.New("refused: " + what)})
			continue
		}
		wg.Go(func() {
			if err := p.destroy(ctx, v); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// destroy hard powers off and destroys one owned VM; gone is success.
func (p *Provider) destroy(ctx context.Context, v vmInfo) error {
	if err := acquire(ctx, p.tasks); err != nil {
		return wrap("destroy", v.name, err)
	}
	defer func() { <-p.tasks }()
	vm := object.NewVirtualMachine(p.client, v.ref)
	log := p.clusterLogger(ctx, v.marks[KeyCluster]).With("vm", v.name, "id", v.ref.Value)
	if v.power != types.VirtualMachinePowerStatePoweredOff {
		log.Info("Powering off VM")
		t, err := vm.PowerOff(ctx)
		if err == nil {
			_, err = p.wait(ctx, t)
		}
		switch {
		case err == nil, fault.Is(err, &types.InvalidPowerState{}):
		case gone(err):
			return nil
		default:
			return wrap("power off", v.name, err)
		}
	}
	log.Info("Destroying VM")
	t, err := vm.Destroy(ctx)
	if err == nil {
		_, err = p.wait(ctx, t)
	}
	if err != nil && !gone(err) {
		return wrap("destroy", v.name, err)
	}
	return nil
}

// gone reports whether err says the object no longer exists.
func gone(err error) bool {
	return fault.Is(err, &types.ManagedObjectNotFound{})
}
