package vsphere

import (
	"context"
	"errors"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/fleetd/fleetd/reconcile"
)

// template is a VM the provider clones, with the devices a clone edits.
type template struct {
	name string
	ref  types.ManagedObjectReference
	disk *types.VirtualDisk            // the first disk; nil when it has none
	nic  types.BaseVirtualEthernetCard // the first network card; nil when it has none
}

// template returns the template named name (an inventory path, a name in the
// datacenter's VM folder, or a unique name anywhere below it). Found
// templates are cached until a clone says they vanished.
func (p *Provider) template(ctx context.Context, inv *inventory, name string) (*template, error) {
	p.tmplMu.Lock()
	defer p.tmplMu.Unlock()
	if t, ok := p.templates[name]; ok {
		return t, nil
	}
	finder := find.NewFinder(p.client, false).SetDatacenter(inv.dc)
	vm, err := finder.VirtualMachine(ctx, name)
	var nf *find.NotFoundError
	if errors.As(err, &nf) {
		vm, err = p.searchTemplate(ctx, inv, name)
	}
	if err != nil {
		return nil, lookupError("template", name, err)
	}
	var o mo.VirtualMachine
	if err := property.DefaultCollector(p.client).RetrieveOne(ctx, vm.Reference(), []string{"config.hardware.device"}, &o); err != nil {
		return nil, wrap("read devices of template", name, err)
	}
	t := &template{name: name, ref: vm.Reference()}
	if o.Config != nil {
		devices := object.VirtualDeviceList(o.Config.Hardware.Device)
		if disks := devices.SelectByType((*types.VirtualDisk)(nil)); len(disks) > 0 {
			t.disk = disks[0].(*types.VirtualDisk)
		}
		for _, d := range devices {
			if nic, ok := d.(types.BaseVirtualEthernetCard); ok {
				t.nic = nic
				break
			}
		}
	}
	p.templates[name] = t
	return t, nil
}

// forgetTemplate drops a cached template that vanished.
func (p *Provider) forgetTemplate(name string) {
	p.tmplMu.Lock()
	defer p.tmplMu.Unlock()
	delete(p.templates, name)
}

// searchTemplate finds a template by name anywhere below the VM folder, in
// one retrieval.
func (p *Provider) searchTemplate(ctx context.Context, inv *inventory, name string) (*object.VirtualMachine, error) {
	v, err := view.NewManager(p.client).CreateContainerView(ctx, inv.vmFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, err
	}
	defer func() { _ = v.Destroy(context.WithoutCancel(ctx)) }()
	refs, err := v.Find(ctx, []string{"VirtualMachine"}, property.Match{"name": name, "config.template": true})
	if err != nil {
		return nil, err
	}
	switch len(refs) {
	case 0:
		return nil, reconcile.Stalled(&notFoundError{what: "template", name: name, err: errors.New("no template of that name below the VM folder")})
	case 1:
		return object.NewVirtualMachine(p.client, refs[0]), nil
	default:
		return nil, reconcile.Stalled(&notFoundError{what: "template", name: name, err: errors.New("more than one template of that name; name it by inventory path")})
	}
}
