package vsphere

import (
	"context"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/fleetd/fleetd/reconcile"
)

// vmInfo is what the provider reads of a VM.
type vmInfo struct {
	ref      types.ManagedObjectReference
	name     string
	template bool
	power    types.VirtualMachinePowerState
	ip       string
	created  time.Time
	marks    map[string]string
	missing  bool // the VM does not exist (any more)
}

// owned reports whether the VM carries fleet's mark. Templates are never
// machines, whatever they carry.
func (v *vmInfo) owned(fleet string) bool {
	return !v.missing && !v.template && v.marks[KeyFleet] == fleet
}

// vmProps are the only properties the provider reads of a VM: no per-VM
// round trip and no user data ever travels back.
var vmProps = func() []string {
	ps := []string{"name", "config.template", "config.createDate", "runtime.powerState", "guest.ipAddress"}
	for _, k := range markKeys {
		ps = append(ps, extraConfigPath(k))
	}
	return ps
}()

var markByPath = func() map[string]string {
	m := map[string]string{}
	for _, k := range markKeys {
		m[extraConfigPath(k)] = k
	}
	return m
}()

// parseVM reads an ObjectContent of vmProps.
func parseVM(oc types.ObjectContent) vmInfo {
	v := vmInfo{ref: oc.Obj, marks: map[string]string{}}
	for _, dp := range oc.PropSet {
		switch dp.Name {
		case "name":
			v.name, _ = dp.Val.(string)
		case "config.template":
			v.template, _ = dp.Val.(bool)
		case "config.createDate":
			switch t := dp.Val.(type) {
			case time.Time:
				v.created = t
			case *time.Time:
				if t != nil {
					v.created = *t
				}
			}
		case "runtime.powerState":
			v.power, _ = dp.Val.(types.VirtualMachinePowerState)
		case "guest.ipAddress":
			v.ip, _ = dp.Val.(string)
		default:
			if key, ok := markByPath[dp.Name]; ok {
				v.marks[key] = optionString(dp.Val)
			}
		}
	}
	for _, m := range oc.MissingSet {
		if fault.Is(m.Fault.Fault, &types.ManagedObjectNotFound{}) {
			v.missing = true
		}
	}
	return v
}

func optionString(val types.AnyType) string {
	var ov types.BaseOptionValue
	switch o := val.(type) {
	case types.BaseOptionValue:
		ov = o
	case types.OptionValue:
		ov = &o
	default:
		return ""
	}
	s, _ := ov.GetOptionValue().Value.(string)
	return s
}

// machine is the reconcile view of an owned VM.
func (p *Provider) machine(v vmInfo) reconcile.Machine {
	return reconcile.Machine{
		ID:           v.ref.Value,
		Name:         v.name,
		Provider:     p.cfg.Name,
		Cluster:      v.marks[KeyCluster],
		Team:         v.marks[KeyTeam],
		Pool:         v.marks[KeyPool],
		TemplateHash: v.marks[KeyTemplateHash],
		State:        vmState(v.power),
		Address:      v.ip,
		CreatedAt:    v.created,
	}
}

// retrieve runs one property-collector retrieval of the VMs that objs select
// (paged by the provider's page size) and parses them. A result that says the
// session is gone (some vCenters report that per property instead of failing
// the call) logs in again and retrieves once more.
func (p *Provider) retrieve(ctx context.Context, objs []types.ObjectSpec) ([]vmInfo, error) {
	for attempt := 0; ; attempt++ {
		seen := p.session.gen()
		req := types.RetrieveProperties{SpecSet: []types.PropertyFilterSpec{{
			ObjectSet:                     objs,
			PropSet:                       []types.PropertySpec{{Type: "VirtualMachine", PathSet: vmProps}},
			ReportMissingObjectsInResults: types.NewBool(true),
		}}}
		res, err := property.DefaultCollector(p.client).RetrieveProperties(ctx, req, int32(p.cfg.PageSize))
		if err != nil {
			return nil, err
		}
		if f := deniedProperty(res.Returnval); f != nil {
			// Reading a VM without its marks would make it look foreign (and
			// vanish from List); that must never pass for an answer.
			if attempt == 0 && fault.Is(f, &types.NotAuthenticated{}) {
				if err := p.session.relogin(ctx, seen); err != nil {
					return nil, err
				}
				continue
			}
			return nil, classify(&Error{Op: "read properties", Fault: faultName(f),
				Err: faultError(f, "vCenter withheld properties for lack of a session or of permission")})
		}
		out := make([]vmInfo, 0, len(res.Returnval))
		for _, oc := range res.Returnval {
			if oc.Obj.Type == "VirtualMachine" {
				out = append(out, parseVM(oc))
			}
		}
		return out, nil
	}
}

// deniedProperty returns the first fault that withheld a property for lack
// of a session or of permission.
func deniedProperty(ocs []types.ObjectContent) types.BaseMethodFault {
	for _, oc := range ocs {
		for _, m := range oc.MissingSet {
			f := m.Fault.Fault
			if fault.Is(f, &types.NotAuthenticated{}) || fault.Is(f, &types.NoPermission{}) {
				return f
			}
		}
	}
	return nil
}

// faultError makes a vCenter fault with msg an error that fault.Is sees.
func faultError(f types.BaseMethodFault, msg string) error {
	return task.Error{LocalizedMethodFault: &types.LocalizedMethodFault{Fault: f, LocalizedMessage: msg}}
}

// inFolder selects the VMs directly in folder.
func inFolder(folder types.ManagedObjectReference) []types.ObjectSpec {
	return []types.ObjectSpec{{
		Obj:  folder,
		Skip: types.NewBool(true),
		SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{
			Type: "Folder", Path: "childEntity", Skip: types.NewBool(false),
		}},
	}}
}

// inView selects the objects of a container view.
func inView(view types.ManagedObjectReference) []types.ObjectSpec {
	return []types.ObjectSpec{{
		Obj:  view,
		Skip: types.NewBool(true),
		SelectSet: []types.BaseSelectionSpec{&types.TraversalSpec{
			Type: "ContainerView", Path: "view", Skip: types.NewBool(false),
		}},
	}}
}

// byRef selects the given VMs.
func byRef(refs []types.ManagedObjectReference) []types.ObjectSpec {
	out := make([]types.ObjectSpec, len(refs))
	for i, r := range refs {
		out[i] = types.ObjectSpec{Obj: r, Skip: types.NewBool(false)}
	}
	return out
}

// vmsInFolder returns the VMs directly in folder, by name.
func (p *Provider) vmsInFolder(ctx context.Context, folder types.ManagedObjectReference) (map[string]vmInfo, error) {
	if err := acquire(ctx, p.calls); err != nil {
		return nil, err
	}
	defer func() { <-p.calls }()
	vms, err := p.retrieve(ctx, inFolder(folder))
	if err != nil {
		return nil, err
	}
	out := make(map[string]vmInfo, len(vms))
	for _, v := range vms {
		if !v.missing {
			out[v.name] = v
		}
	}
	return out, nil
}
