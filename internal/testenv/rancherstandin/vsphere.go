package rancherstandin

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"

	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// VM is a machine whose agent may run: its name, whether it runs, and its
// cloud-init user data.
type VM struct {
	Name     string
	On       bool
	UserData []byte
}

// VSphereVMs lists every VM of a vCenter (the simulator) with its cloud-init
// user data from guestinfo.userdata.
func VSphereVMs(ctx context.Context, c *vim25.Client) ([]VM, error) {
	m := view.NewManager(c)
	v, err := m.CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, err
	}
	defer func() { _ = v.Destroy(ctx) }()
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "config.extraConfig", "runtime.powerState"}, &vms); err != nil {
		return nil, err
	}
	var out []VM
	for _, vm := range vms {
		o := VM{Name: vm.Name, On: vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn}
		if vm.Config != nil {
			enc := ""
			for _, ov := range vm.Config.ExtraConfig {
				if kv := ov.GetOptionValue(); kv.Key == "guestinfo.userdata.encoding" {
					enc, _ = kv.Value.(string)
				}
			}
			for _, ov := range vm.Config.ExtraConfig {
				kv := ov.GetOptionValue()
				if kv.Key != "guestinfo.userdata" {
					continue
				}
				s, _ := kv.Value.(string)
				if enc == "base64" {
					b, err := base64.StdEncoding.DecodeString(s)
					if err != nil {
						return nil, fmt.Errorf("standin: vm %s user data: %w", vm.Name, err)
					}
					o.UserData = b
				} else {
					o.UserData = []byte(s)
				}
			}
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b VM) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out, nil
}

// SyncAgents plays the agents of vms: each running VM whose user data runs a
// node command registers (once); each registered node whose VM is gone or
// off goes NotReady. It returns the machines registered by this call.
func (r *Rancher) SyncAgents(ctx context.Context, vms []VM) ([]string, error) {
	running := map[string]bool{}
	var registered []string
	for _, vm := range vms {
		if !vm.On || len(vm.UserData) == 0 {
			continue
		}
		reg, err := ParseUserData(vm.UserData)
		if err != nil {
			continue // not a node of a registered cluster
		}
		running[reg.NodeName] = true
		r.mu.Lock()
		_, done := r.nodes[reg.NodeName]
		r.mu.Unlock()
		if done {
			continue
		}
		name, err := r.Register(ctx, vm.UserData)
		if err != nil {
			return registered, fmt.Errorf("standin: agent of %s: %w", vm.Name, err)
		}
		r.mu.Lock()
		r.nodes[reg.NodeName] = name
		r.mu.Unlock()
		registered = append(registered, name)
	}
	r.mu.Lock()
	var lost []string
	for node := range r.nodes {
		switch {
		case running[node]:
		case r.retired[node]:
			// Its Machine was deleted and its VM is gone: a new VM of the
			// same name is a new machine whose agent registers afresh.
			delete(r.nodes, node)
			delete(r.retired, node)
			delete(r.lost, node)
		case !r.lost[node]:
			lost = append(lost, node)
		}
	}
	r.mu.Unlock()
	for _, node := range lost {
		if err := r.NodeLost(ctx, node); err != nil {
			return registered, err
		}
	}
	return registered, nil
}
