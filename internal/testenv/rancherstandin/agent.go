package rancherstandin

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ErrTokenRejected is returned for a node command whose token or CA checksum
// Rancher would refuse.
var ErrTokenRejected = errors.New("standin: registration token rejected")

// Registration is what a machine's cloud-init node command says.
type Registration struct {
	ID         string // CATTLE_ID
	Server     string
	Token      string
	CAChecksum string
	NodeName   string
	Roles      []string
}

var (
	reCattleID = regexp.MustCompile(`(?m)^\s*export CATTLE_ID='([^']+)'`)
	reInstall  = regexp.MustCompile(`(?m)^\s*curl .*system-agent-install\.sh \| .*$`)
)

// ParseUserData reads the node command from a machine's cloud-init user data,
// as the install script would see it.
func ParseUserData(userData []byte) (Registration, error) {
	s := string(userData)
	var reg Registration
	if m := reCattleID.FindStringSubmatch(s); m != nil {
		reg.ID = m[1]
	}
	line := reInstall.FindString(s)
	if line == "" {
		return reg, errors.New("standin: user data runs no node command")
	}
	if strings.Contains(line, "sudo") {
		return reg, errors.New("standin: the node command runs sudo; cloud-init runs it as root")
	}
	f := strings.Fields(line)
	for i := 0; i < len(f); i++ {
		next := func() string {
			if i+1 < len(f) {
				i++
				return strings.Trim(f[i], "'")
			}
			return ""
		}
		switch f[i] {
		case "--server":
			reg.Server = next()
		case "--token":
			reg.Token = next()
		case "--ca-checksum":
			reg.CAChecksum = next()
		case "--node-name":
			reg.NodeName = next()
		case "--etcd":
			reg.Roles = append(reg.Roles, "etcd")
		case "--controlplane":
			reg.Roles = append(reg.Roles, "controlplane")
		case "--worker":
			reg.Roles = append(reg.Roles, "worker")
		}
	}
	if reg.ID == "" || reg.NodeName == "" || reg.Token == "" || len(reg.Roles) == 0 {
		return reg, fmt.Errorf("standin: node command lacks CATTLE_ID, --node-name, --token or a role")
	}
	return reg, nil
}

// Register plays a machine's system agent running its cloud-init: it checks
// the server, CA checksum and token as Rancher does, then creates the
// cluster's Cluster API Machine (named from CATTLE_ID) with Rancher's labels,
// which provisions the cluster; its node joins at the next Step. It is
// idempotent: a registered machine is left as it is.
func (r *Rancher) Register(ctx context.Context, userData []byte) (machine string, err error) {
	reg, err := ParseUserData(userData)
	if err != nil {
		return "", err
	}
	if reg.Server != r.URL || reg.CAChecksum != r.Proxy.CAChecksum {
		return "", fmt.Errorf("%w: server or CA checksum does not match", ErrTokenRejected)
	}
	r.mu.Lock()
	id := ""
	for cid, tok := range r.tokens {
		if tok == reg.Token {
			id = cid
		}
	}
	r.mu.Unlock()
	if id == "" {
		return "", ErrTokenRejected
	}
	mc, err := r.dyn.Resource(mgmtGVR).Get(ctx, id, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("standin: management cluster %s: %w", id, err)
	}
	cluster, _, _ := unstructured.NestedString(mc.Object, "spec", "displayName")
	name := MachineName(reg.ID)
	labels := map[string]any{
		"cluster.x-k8s.io/cluster-name":   cluster,
		"rke.cattle.io/cluster-name":      cluster,
		"rke.cattle.io/machine-id":        reg.ID,
		"rke.cattle.io/node-name":         reg.NodeName,
		"standin.fleetd.io/management-id": id,
	}
	for _, role := range reg.Roles {
		labels[map[string]string{"etcd": "rke.cattle.io/etcd-role", "controlplane": "rke.cattle.io/control-plane-role", "worker": "rke.cattle.io/worker-role"}[role]] = "true"
	}
	// Registration makes the Machine with no finalizer, phase or nodeRef:
	// Cluster API sets those once the node joins (see join), so a Machine
	// deleted before that goes at once.
	meta := map[string]any{"name": name, "namespace": r.opts.Namespace, "labels": labels}
	m := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
		"metadata": meta,
		"spec": map[string]any{
			"clusterName":       cluster,
			"bootstrap":         map[string]any{"configRef": map[string]any{"apiGroup": "rke.cattle.io", "kind": "RKEBootstrap", "name": name}},
			"infrastructureRef": map[string]any{"apiGroup": "rke.cattle.io", "kind": "CustomMachine", "name": name},
		},
	}}
	mri := r.dyn.Resource(machineGVR).Namespace(r.opts.Namespace)
	_, err = mri.Create(ctx, m, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return name, nil
	}
	if err != nil {
		return "", fmt.Errorf("standin: create machine %s: %w", name, err)
	}
	// The first registration provisions the cluster: from now on Rancher
	// serves its API.
	if err := r.provisioned(ctx, mc); err != nil {
		return "", err
	}
	r.record("register", id, name+" "+reg.NodeName)
	return name, nil
}

// provisioned sets the management cluster's Provisioned condition True
// (kept from then on).
func (r *Rancher) provisioned(ctx context.Context, mc *unstructured.Unstructured) error {
	if conditionTrue(mc, "Provisioned") {
		return nil
	}
	conds, _, _ := unstructured.NestedSlice(mc.Object, "status", "conditions")
	conds = slices.DeleteFunc(conds, func(c any) bool {
		m, ok := c.(map[string]any)
		return ok && m["type"] == "Provisioned"
	})
	conds = append(conds, map[string]any{"type": "Provisioned", "status": "True"})
	_ = unstructured.SetNestedSlice(mc.Object, conds, "status", "conditions")
	if _, err := r.dyn.Resource(mgmtGVR).UpdateStatus(ctx, mc, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("standin: management cluster %s status: %w", mc.GetName(), err)
	}
	return nil
}

func (r *Rancher) setNodeReady(ctx context.Context, n *corev1.Node, ready bool) error {
	st := corev1.ConditionFalse
	reason := "NodeStatusUnknown"
	if ready {
		st, reason = corev1.ConditionTrue, "KubeletReady"
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st, Reason: reason, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	_, err := r.core.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("standin: node %s status: %w", n.Name, err)
	}
	return nil
}

// NodeLost marks a node NotReady, as its kubelet stops reporting when its VM
// is gone. A node that does not exist is no error.
func (r *Rancher) NodeLost(ctx context.Context, node string) error {
	n, err := r.core.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.lost[node] = true
	r.mu.Unlock()
	return r.setNodeReady(ctx, n, false)
}
