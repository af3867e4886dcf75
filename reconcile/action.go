package reconcile

import (
	"encoding/json"
	"fmt"
	"time"
)

// ActionKind is the kind of one step of a plan. The set is closed.
type ActionKind int

// Action kinds.
const (
	// ActionRegister ensures the cluster is registered with Rancher (creates it,
	// or updates its Kubernetes version or protected mark).
	ActionRegister ActionKind = iota + 1
	// ActionBind grants an LDAP group a cluster role.
	ActionBind
	// ActionUnbind removes a binding fleetd made.
	ActionUnbind
	// ActionCreateMachines creates machines of one pool.
	ActionCreateMachines
	// ActionReplaceMachine creates the surge machine that replaces an old
	// machine of a pool whose template changed; the old one is removed in a
	// later sync once the new one is ready.
	ActionReplaceMachine
	// ActionDrainMachine cordons and drains a machine's node.
	ActionDrainMachine
	// ActionDeleteRancherMachine deletes a machine's Rancher (Cluster API)
	// Machine; Rancher then removes its etcd member and node.
	ActionDeleteRancherMachine
	// ActionDeleteMachines deletes VMs or instances of one provider.
	ActionDeleteMachines
	// ActionUnregister deletes the cluster from Rancher.
	ActionUnregister
)

var actionNames = map[ActionKind]string{
	ActionRegister:             "register cluster",
	ActionBind:                 "bind access",
	ActionUnbind:               "unbind access",
	ActionCreateMachines:       "create machines",
	ActionReplaceMachine:       "replace machine",
	ActionDrainMachine:         "drain machine",
	ActionDeleteRancherMachine: "delete rancher machine",
	ActionDeleteMachines:       "delete machines",
	ActionUnregister:           "unregister cluster",
}

var actionKeys = map[ActionKind]string{
	ActionRegister:             "register",
	ActionBind:                 "bind",
	ActionUnbind:               "unbind",
	ActionCreateMachines:       "create-machines",
	ActionReplaceMachine:       "replace-machine",
	ActionDrainMachine:         "drain-machine",
	ActionDeleteRancherMachine: "delete-rancher-machine",
	ActionDeleteMachines:       "delete-machines",
	ActionUnregister:           "unregister",
}

// String returns the kind in words, such as "create machines".
func (k ActionKind) String() string {
	if s, ok := actionNames[k]; ok {
		return s
	}
	return fmt.Sprintf("ActionKind(%d)", int(k))
}

// IsDestructive reports whether the kind removes or disrupts something that
// exists: a machine, a node's workloads, a binding or a registration.
func (k ActionKind) IsDestructive() bool {
	switch k {
	case ActionUnbind, ActionDrainMachine, ActionDeleteRancherMachine, ActionDeleteMachines, ActionUnregister:
		return true
	}
	return false
}

// MarshalText encodes the kind as a stable key, such as create-machines.
func (k ActionKind) MarshalText() ([]byte, error) {
	if s, ok := actionKeys[k]; ok {
		return []byte(s), nil
	}
	return nil, fmt.Errorf("unknown action kind %d", int(k))
}

// UnmarshalText decodes a key written by MarshalText.
func (k *ActionKind) UnmarshalText(b []byte) error {
	for kind, s := range actionKeys {
		if s == string(b) {
			*k = kind
			return nil
		}
	}
	return fmt.Errorf("unknown action kind %q", b)
}

// Action is one step of a plan for one cluster.
type Action struct {
	Kind    ActionKind `json:"kind"`
	Cluster string     `json:"cluster"`
	// Provider is where machines are created or deleted.
	Provider string `json:"provider,omitempty"`
	Pool     string `json:"pool,omitempty"`
	// Machines are the machine names the action creates, drains or deletes.
	Machines []string `json:"machines,omitempty"`
	// IDs are the provider IDs of the machines an ActionDeleteMachines deletes.
	IDs []string `json:"ids,omitempty"`
	// RancherMachine is the Machine an ActionDeleteRancherMachine deletes.
	RancherMachine string `json:"rancherMachine,omitempty"`
	// ExcludeDrain deletes a Rancher machine whose VM is gone without draining.
	ExcludeDrain bool `json:"excludeDrain,omitempty"`
	// ClusterID is the management cluster ID a drain goes through.
	ClusterID string `json:"clusterID,omitempty"`
	// Replaces is the old machine an ActionReplaceMachine replaces.
	Replaces string `json:"replaces,omitempty"`
	// Template is what an ActionCreateMachines or ActionReplaceMachine creates.
	Template *Template `json:"template,omitempty"`
	// Register is what an ActionRegister ensures.
	Register *RegisterSpec `json:"register,omitempty"`
	// Binding is what an ActionBind or ActionUnbind grants or removes.
	Binding *Binding `json:"binding,omitempty"`
	// Reason says why, in words, with the numbers.
	Reason string `json:"reason"`
	// Decommission marks the steps of a decommission.
	Decommission bool `json:"decommission,omitempty"`
	// Blocked says why the gate holds the action back; a blocked action is
	// reported, not executed.
	Blocked string `json:"blocked,omitempty"`
	// Deferred marks a blocked action that a later sync runs by itself (a
	// per-sync limit held it back); otherwise a person must act.
	Deferred bool `json:"deferred,omitempty"`
}

// MachineChanges returns how many machines the action creates or deletes.
func (a *Action) MachineChanges() int {
	switch a.Kind {
	case ActionCreateMachines, ActionReplaceMachine, ActionDeleteMachines:
		return len(a.Machines)
	}
	return 0
}

// Runnable reports whether apply executes the action.
func (a *Action) Runnable() bool { return a.Blocked == "" }

// String describes the action in one line without its reason.
func (a *Action) String() string {
	switch a.Kind {
	case ActionCreateMachines:
		return fmt.Sprintf("create %s in %s on %s", count(len(a.Machines), "machine"), a.Pool, a.Provider)
	case ActionReplaceMachine:
		return fmt.Sprintf("replace %s with %s", a.Replaces, first(a.Machines))
	case ActionDrainMachine:
		return "drain " + first(a.Machines)
	case ActionDeleteRancherMachine:
		if len(a.Machines) == 0 {
			return "delete rancher machine " + a.RancherMachine
		}
		return fmt.Sprintf("delete rancher machine %s (%s)", a.RancherMachine, first(a.Machines))
	case ActionDeleteMachines:
		return fmt.Sprintf("delete %s on %s", count(len(a.Machines), "machine"), a.Provider)
	case ActionBind, ActionUnbind:
		if a.Binding != nil {
			return fmt.Sprintf("%s %s %s", a.Kind, a.Binding.Role, a.Binding.PrincipalID)
		}
	}
	return a.Kind.String()
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func count(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// Change summarizes what a plan does to a cluster.
type Change string

// Changes.
const (
	ChangeNone         Change = "none"
	ChangeCreate       Change = "create"
	ChangeUpdate       Change = "update"
	ChangeDecommission Change = "decommission"
)

// ClusterPlan is the part of a plan for one cluster.
type ClusterPlan struct {
	Name     string `json:"name"`
	Team     string `json:"team"`
	Provider string `json:"provider,omitempty"`
	Change   Change `json:"change"`
	// Desired and Observed say on which side the cluster exists.
	Desired  bool `json:"desired"`
	Observed bool `json:"observed"`
	// Removed marks a cluster that exists but is no longer in the fleet repo.
	Removed bool `json:"removed,omitempty"`
	// Expired marks a temporary cluster whose TTL has passed.
	Expired   bool       `json:"expired,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	Held      bool       `json:"held,omitempty"`
	Protected bool       `json:"protected,omitempty"`
	Paused    bool       `json:"paused,omitempty"`
	// DecommissionStarted marks a decommission past its first step.
	DecommissionStarted bool     `json:"decommissionStarted,omitempty"`
	Actions             []Action `json:"actions,omitempty"`
	// Waiting lists what is in progress elsewhere (a machine booting, Rancher
	// removing a node): the next sync looks again.
	Waiting []string `json:"waiting,omitempty"`
	// Unobserved says the cluster is left alone because part of it could
	// not be observed (its Waiting entry says which): that is a failure to
	// try again (the peer's backoff says when), not work in progress.
	Unobserved bool `json:"unobserved,omitempty"`
	// Notes say what the plan could not take into account, such as a TTL
	// whose start is unknown.
	Notes []string `json:"notes,omitempty"`
	// Blocked says why nothing can be planned for the cluster at all.
	Blocked string `json:"blocked,omitempty"`
	// Removes lists the machines a decommission removes, over its steps.
	Removes []string `json:"removes,omitempty"`
	// Before is what the cluster's machines cost now; After what they cost
	// once this sync's runnable actions are done (held-back actions not
	// counted); Eventual what the spec costs once everything held back is
	// done too.
	Before   Cost `json:"costBefore"`
	After    Cost `json:"costAfter"`
	Eventual Cost `json:"costEventual"`
}

// Runnable returns the actions apply executes.
func (c *ClusterPlan) Runnable() []Action {
	var out []Action
	for _, a := range c.Actions {
		if a.Runnable() {
			out = append(out, a)
		}
	}
	return out
}

// Plan is what one sync does: an ordered, deterministic list of actions per
// cluster, with the cost before and after. It is data; Apply executes it.
type Plan struct {
	Revision string `json:"revision"`
	// Observed says what the plan was computed against ("origin/fleet-status
	// @ 1a2b3c4", "the providers and Rancher"); the caller fills it in.
	Observed string `json:"observed,omitempty"`
	// Warnings say what the plan could not take into account, such as a
	// missing recorded status.
	Warnings []string `json:"warnings,omitempty"`
	// Blocked says why nothing is planned for the whole fleet (fleet.yaml is
	// invalid, Rancher could not be observed).
	Blocked string `json:"blocked,omitempty"`
	// UnidentifiedRejected are rejected cluster files whose cluster could
	// not be identified: while there are any, nothing is decommissioned.
	UnidentifiedRejected []string `json:"unidentifiedRejected,omitempty"`
	// Clusters are every cluster desired or observed, sorted by name.
	Clusters []ClusterPlan `json:"clusters"`
	Teams    []TeamCost    `json:"teams"`
	Before   Cost          `json:"costBefore"`
	After    Cost          `json:"costAfter"`
	Eventual Cost          `json:"costEventual"`
}

// HasChanges reports whether the plan changes anything now or in a later sync
// by itself: a runnable or deferred action.
func (p *Plan) HasChanges() bool {
	for i := range p.Clusters {
		for _, a := range p.Clusters[i].Actions {
			if a.Runnable() || a.Deferred {
				return true
			}
		}
	}
	return false
}

// InProgress reports whether the next sync should come soon: something runs,
// waits or was deferred. A cluster that could not be observed is not in
// progress: when to look again is its peer's backoff.
func (p *Plan) InProgress() bool {
	if p.HasChanges() {
		return true
	}
	for i := range p.Clusters {
		if len(p.Clusters[i].Waiting) > 0 && !p.Clusters[i].Unobserved {
			return true
		}
	}
	return false
}

// Converged reports whether nothing is left to do or wait for; blocked
// actions that need a person may remain.
func (p *Plan) Converged() bool { return !p.InProgress() }

// Cluster returns the plan of the named cluster, or nil.
func (p *Plan) Cluster(name string) *ClusterPlan {
	lo, hi := 0, len(p.Clusters)
	for lo < hi {
		m := (lo + hi) / 2
		if p.Clusters[m].Name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(p.Clusters) && p.Clusters[lo].Name == name {
		return &p.Clusters[lo]
	}
	return nil
}

// JSON returns the plan as indented JSON, byte for byte the same for the same plan.
func (p *Plan) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
