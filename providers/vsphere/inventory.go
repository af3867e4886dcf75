package vsphere

import (
	"context"
	"errors"
	"path"
	"strings"
	"sync"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/fleetd/fleetd/reconcile"
)

// inventory is what fleet.yaml names in vCenter, resolved once.
type inventory struct {
	dc        *object.Datacenter
	vmFolder  types.ManagedObjectReference // the datacenter's VM folder
	baseParts []string                     // the base folder's path below vmFolder
	pool      types.ManagedObjectReference
	datastore types.ManagedObjectReference
	network   types.BaseVirtualDeviceBackingInfo
}

// resolve looks up the inventory objects of the provider's spec. A failure is
// not cached, so a later call tries again.
func (p *Provider) resolve(ctx context.Context) (*inventory, error) {
	p.invMu.Lock()
	defer p.invMu.Unlock()
	if p.inv != nil {
		return p.inv, nil
	}
	s := p.cfg.Spec
	finder := find.NewFinder(p.client, false)
	dc, err := finder.Datacenter(ctx, s.Datacenter)
	if err != nil {
		return nil, lookupError("datacenter", s.Datacenter, err)
	}
	finder.SetDatacenter(dc)
	folders, err := dc.Folders(ctx)
	if err != nil {
		return nil, wrap("look up folders of datacenter", s.Datacenter, err)
	}
	inv := &inventory{dc: dc, vmFolder: folders.VmFolder.Reference()}
	for _, part := range strings.Split(strings.Trim(path.Clean("/"+s.Folder), "/"), "/") {
		if part != "" {
			inv.baseParts = append(inv.baseParts, part)
		}
	}
	if len(inv.baseParts) == 0 {
		return nil, reconcile.Stalled(&specError{msg: "folder must name a folder below the datacenter's VM folder"})
	}

	if s.ResourcePool != "" {
		rp, err := finder.ResourcePool(ctx, s.ResourcePool)
		if err != nil {
			return nil, lookupError("resource pool", s.ResourcePool, err)
		}
		inv.pool = rp.Reference()
	} else {
		cl, err := finder.ClusterComputeResource(ctx, s.ComputeCluster)
		if err != nil {
			return nil, lookupError("compute cluster", s.ComputeCluster, err)
		}
		rp, err := cl.ResourcePool(ctx)
		if err != nil {
			return nil, wrap("look up root resource pool of", s.ComputeCluster, err)
		}
		inv.pool = rp.Reference()
	}
	ds, err := finder.Datastore(ctx, s.Datastore)
	if err != nil {
		return nil, lookupError("datastore", s.Datastore, err)
	}
	inv.datastore = ds.Reference()
	net, err := finder.Network(ctx, s.Network)
	if err != nil {
		return nil, lookupError("network", s.Network, err)
	}
	if inv.network, err = net.EthernetCardBackingInfo(ctx); err != nil {
		return nil, wrap("look up backing of network", s.Network, err)
	}
	p.inv = inv
	return inv, nil
}

// lookupError makes a missing inventory object a stalled error: fleet.yaml
// names something vCenter does not have.
func lookupError(what, name string, err error) error {
	var nf *find.NotFoundError
	var mf *find.MultipleFoundError
	if errors.As(err, &nf) || errors.As(err, &mf) {
		return reconcile.Stalled(&notFoundError{what: what, name: name, err: err})
	}
	return wrap("look up "+what, name, err)
}

// baseFolder returns the provider's base folder. When it does not exist it
// returns a zero reference, or creates it when create is set.
func (p *Provider) baseFolder(ctx context.Context, inv *inventory, create bool) (types.ManagedObjectReference, error) {
	return p.folderPath(ctx, inv, inv.baseParts, create)
}

// clusterFolder returns <base>/<team>/<cluster>, created when missing.
func (p *Provider) clusterFolder(ctx context.Context, inv *inventory, team, cluster string) (types.ManagedObjectReference, error) {
	parts := append(append([]string{}, inv.baseParts...), team, cluster)
	return p.folderPath(ctx, inv, parts, true)
}

// folderPath walks parts below the VM folder and returns the last folder,
// creating what is missing when create is set. Found folders are cached; each
// prefix is created by one goroutine at a time, so concurrent creates of one
// cluster make one folder.
func (p *Provider) folderPath(ctx context.Context, inv *inventory, parts []string, create bool) (types.ManagedObjectReference, error) {
	key := strings.Join(parts, "/")
	if ref, ok := p.cachedFolder(key); ok {
		return ref, nil
	}
	parent := inv.vmFolder
	for i := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		if ref, ok := p.cachedFolder(prefix); ok {
			parent = ref
			continue
		}
		ref, err := p.childFolder(ctx, parent, prefix, parts[i], create)
		if err != nil || ref.Value == "" {
			return types.ManagedObjectReference{}, err
		}
		parent = ref
	}
	return parent, nil
}

func (p *Provider) cachedFolder(key string) (types.ManagedObjectReference, bool) {
	p.folderMu.Lock()
	defer p.folderMu.Unlock()
	ref, ok := p.folders[key]
	return ref, ok
}

// forgetFolder drops a cached folder that vanished, with every path below it.
func (p *Provider) forgetFolder(ref types.ManagedObjectReference) {
	p.folderMu.Lock()
	defer p.folderMu.Unlock()
	for k, v := range p.folders {
		if v == ref {
			for k2 := range p.folders {
				if k2 == k || strings.HasPrefix(k2, k+"/") {
					delete(p.folders, k2)
				}
			}
		}
	}
}

func (p *Provider) pathLock(key string) *sync.Mutex {
	p.folderMu.Lock()
	defer p.folderMu.Unlock()
	mu, ok := p.pathMu[key]
	if !ok {
		mu = new(sync.Mutex)
		p.pathMu[key] = mu
	}
	return mu
}

// childFolder finds the folder name in parent, creating it when create is
// set, and caches it under key.
func (p *Provider) childFolder(ctx context.Context, parent types.ManagedObjectReference, key, name string, create bool) (types.ManagedObjectReference, error) {
	mu := p.pathLock(key)
	mu.Lock()
	defer mu.Unlock()
	if ref, ok := p.cachedFolder(key); ok {
		return ref, nil
	}
	si := object.NewSearchIndex(p.client)
	lookup := func() (types.ManagedObjectReference, error) {
		obj, err := si.FindChild(ctx, parent, name)
		if err != nil {
			return types.ManagedObjectReference{}, wrap("look up folder", key, err)
		}
		if obj == nil {
			return types.ManagedObjectReference{}, nil
		}
		if obj.Reference().Type != "Folder" {
			return types.ManagedObjectReference{}, reconcile.Stalled(&specError{msg: "folder " + key + ": a " + obj.Reference().Type + " of that name is in the way"})
		}
		return obj.Reference(), nil
	}
	ref, err := lookup()
	if err != nil {
		return ref, err
	}
	if ref.Value == "" && create {
		p.log.Info("Creating folder", "folder", key)
		f, cerr := object.NewFolder(p.client, parent).CreateFolder(ctx, name)
		switch {
		case cerr == nil:
			ref = f.Reference()
		case fault.Is(cerr, &types.DuplicateName{}):
			// Another fleetd (or a person) made it meanwhile.
			if ref, err = lookup(); err != nil {
				return ref, err
			}
		default:
			return ref, wrap("create folder", key, cerr)
		}
	}
	if ref.Value != "" {
		p.folderMu.Lock()
		p.folders[key] = ref
		p.folderMu.Unlock()
	}
	return ref, nil
}
