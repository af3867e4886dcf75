package vsphere

import (
	"context"
	"slices"
	"strings"

	"github.com/vmware/govmomi/view"

	"github.com/fleetd/fleetd/reconcile"
)

// List returns every machine of the fleet in this provider, sorted by name:
// one property-collector retrieval (paged) over a recursive container view of
// the base folder, reading only names, power states, addresses, creation
// dates and the marks. VMs without the fleet's mark, and templates, are left
// out. A missing base folder means an empty fleet.
func (p *Provider) List(ctx context.Context) ([]reconcile.Machine, error) {
	if err := p.connect(ctx); err != nil {
		return nil, err
	}
	inv, err := p.resolve(ctx)
	if err != nil {
		return nil, err
	}
	base, err := p.baseFolder(ctx, inv, false)
	if err != nil {
		return nil, err
	}
	if base.Value == "" {
		return []reconcile.Machine{}, nil
	}
	vm := view.NewManager(p.client)
	v, err := vm.CreateContainerView(ctx, base, []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, wrap("list", strings.Join(inv.baseParts, "/"), err)
	}
	defer func() {
		// A view lives as long as the session; destroying it is tidiness, and
		// must not turn a good list into a failure.
		_ = v.Destroy(context.WithoutCancel(ctx))
	}()
	vms, err := p.retrieve(ctx, inView(v.Reference()))
	if err != nil {
		return nil, wrap("list", strings.Join(inv.baseParts, "/"), err)
	}
	out := make([]reconcile.Machine, 0, len(vms))
	for _, vm := range vms {
		if vm.owned(p.cfg.Fleet) {
			out = append(out, p.machine(vm))
		}
	}
	slices.SortFunc(out, func(a, b reconcile.Machine) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}
