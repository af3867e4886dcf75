package reconcile

import "testing"

// TestRemovalStep pins the step status shows for a machine being removed:
// the last action for it that ran this sync, one that failed or waits
// included, else what was observed.
func TestRemovalStep(t *testing.T) {
	cp := &ClusterPlan{Actions: []Action{
		{Kind: ActionDrainMachine, Machines: []string{"m1"}},
		{Kind: ActionDeleteRancherMachine, Machines: []string{"m1"}},
		{Kind: ActionDeleteMachines, Machines: []string{"m0"}},
	}}
	running := Machine{Name: "m1", State: MachineRunning}
	cases := []struct {
		name    string
		reached int
		m       Machine
		rm      *RancherMachine
		want    string
	}{
		{"every action ran", -1, running, nil, StepRemoving},
		{"the drain waits", 1, running, nil, StepDraining},
		{"the Rancher machine deletion failed", 2, running, nil, StepRemoving},
		{"VM deletion", -1, Machine{Name: "m0", State: MachineRunning}, nil, StepDeleting},
		{"no action: Rancher is removing it", -1, Machine{Name: "m2"}, &RancherMachine{Phase: RancherMachineDeleting}, StepRemoving},
		{"no action: the VM is terminating", -1, Machine{Name: "m2", State: MachineDeleting}, nil, StepDeleting},
		{"not being removed", -1, Machine{Name: "m2", State: MachineRunning}, &RancherMachine{Phase: RancherMachineRunning}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := removalStep(cp, tc.reached, tc.m, tc.rm); got != tc.want {
				t.Errorf("step %q, want %q", got, tc.want)
			}
		})
	}
}
