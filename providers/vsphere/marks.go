package vsphere

import (
	"encoding/base64"
	"fmt"

	"github.com/vmware/govmomi/vim25/types"

	"github.com/fleetd/fleetd/reconcile"
)

// ExtraConfig keys. The guestinfo.fleetd.* keys are the ownership marks;
// guestinfo.userdata and guestinfo.metadata feed cloud-init's VMware
// datasource.
const (
	KeyFleet        = "guestinfo.fleetd.fleet"
	KeyCluster      = "guestinfo.fleetd.cluster"
	KeyTeam         = "guestinfo.fleetd.team"
	KeyPool         = "guestinfo.fleetd.pool"
	KeyTemplateHash = "guestinfo.fleetd.template-hash"
	// KeyProvider records the provider's name; informational, not a mark
	// List filters on.
	KeyProvider = "guestinfo.fleetd.provider"

	keyUserData         = "guestinfo.userdata"
	keyUserDataEncoding = "guestinfo.userdata.encoding"
	keyMetadata         = "guestinfo.metadata"
	keyMetadataEncoding = "guestinfo.metadata.encoding"
)

// markKeys are the marks List and Delete read.
var markKeys = []string{KeyFleet, KeyCluster, KeyTeam, KeyPool, KeyTemplateHash}

// extraConfigPath is the property path of one ExtraConfig key.
func extraConfigPath(key string) string { return fmt.Sprintf("config.extraConfig[%q]", key) }

// extraConfig is the ExtraConfig of a new machine: marks and cloud-init data.
// It holds the user data; it is sent to vCenter and never logged.
func (p *Provider) extraConfig(spec reconcile.MachineSpec) []types.BaseOptionValue {
	b64 := base64.StdEncoding.EncodeToString
	metadata := fmt.Sprintf("instance-id: %s\nlocal-hostname: %s\n", spec.Name, spec.Name)
	return []types.BaseOptionValue{
		&types.OptionValue{Key: KeyFleet, Value: p.cfg.Fleet},
		&types.OptionValue{Key: KeyCluster, Value: spec.Cluster},
		&types.OptionValue{Key: KeyTeam, Value: spec.Team},
		&types.OptionValue{Key: KeyPool, Value: spec.Pool},
		&types.OptionValue{Key: KeyTemplateHash, Value: spec.TemplateHash},
		&types.OptionValue{Key: KeyProvider, Value: p.cfg.Name},
		&types.OptionValue{Key: keyMetadata, Value: b64([]byte(metadata))},
		&types.OptionValue{Key: keyMetadataEncoding, Value: "base64"},
		&types.OptionValue{Key: keyUserData, Value: b64(spec.UserData)},
		&types.OptionValue{Key: keyUserDataEncoding, Value: "base64"},
	}
}

// vmState maps a VM's power state to a machine state.
func vmState(ps types.VirtualMachinePowerState) reconcile.MachineState {
	switch ps {
	case types.VirtualMachinePowerStatePoweredOn:
		return reconcile.MachineRunning
	case types.VirtualMachinePowerStatePoweredOff, types.VirtualMachinePowerStateSuspended:
		return reconcile.MachineStopped
	default:
		// An unknown power state is a VM still being set up.
		return reconcile.MachinePending
	}
}
