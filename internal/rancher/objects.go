package rancher

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/fleetd/fleetd/reconcile"
)

// Labels and annotations fleetd puts on the objects it makes.
const (
	LabelFleet     = "fleetd.io/fleet"
	LabelTeam      = "fleetd.io/team"
	LabelCluster   = "fleetd.io/cluster"
	LabelProtected = "fleetd.io/protected"
	// AnnotationLabels lists the cluster file's labels fleetd set on the
	// provisioning Cluster, so labels removed from the file are removed too.
	AnnotationLabels = "fleetd.io/labels"
)

// Rancher's and Cluster API's names.
const (
	LabelCAPICluster        = "cluster.x-k8s.io/cluster-name"
	AnnotationExcludeDrain  = "machine.cluster.x-k8s.io/exclude-node-draining"
	AnnotationExcludeDetach = "machine.cluster.x-k8s.io/exclude-wait-for-node-volume-detach"
	DefaultTokenName        = "default-token"
	tokenPlaceholder        = "{token}"
	// ConditionProvisioned is the condition Rancher sets True on a cluster
	// once it is provisioned (its first machine registered) and keeps.
	ConditionProvisioned = "Provisioned"
	capiGroup            = "cluster.x-k8s.io"
)

var (
	ProvisioningClusterGVR = schema.GroupVersionResource{Group: "provisioning.cattle.io", Version: "v1", Resource: "clusters"}
	CRTBGVR                = schema.GroupVersionResource{Group: "management.cattle.io", Version: "v3", Resource: "clusterroletemplatebindings"}
	TokenGVR               = schema.GroupVersionResource{Group: "management.cattle.io", Version: "v3", Resource: "clusterregistrationtokens"}
	ManagementClusterGVR   = schema.GroupVersionResource{Group: "management.cattle.io", Version: "v3", Resource: "clusters"}
)

// MachineGVR returns the Cluster API Machine resource at version.
func MachineGVR(version string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: capiGroup, Version: version, Resource: "machines"}
}

// clusterObject is the provisioning Cluster fleetd writes for spec: a custom
// RKE2 cluster (rkeConfig without machine pools) with fleetd's marks.
func clusterObject(fleet, namespace string, spec reconcile.RegisterSpec) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "provisioning.cattle.io/v1",
		"kind":       "Cluster",
		"metadata":   map[string]any{"name": spec.Name, "namespace": namespace},
		"spec": map[string]any{
			"kubernetesVersion": spec.KubernetesVersion,
			"rkeConfig":         map[string]any{},
		},
	}}
	u.SetLabels(clusterLabels(fleet, spec))
	u.SetAnnotations(map[string]string{AnnotationLabels: strings.Join(slices.Sorted(maps.Keys(spec.Labels)), ",")})
	return u
}

func clusterLabels(fleet string, spec reconcile.RegisterSpec) map[string]string {
	l := map[string]string{}
	for k, v := range spec.Labels {
		l[k] = v
	}
	l[LabelFleet] = fleet
	l[LabelTeam] = spec.Team
	l[LabelCluster] = spec.Name
	if spec.Protected {
		l[LabelProtected] = "true"
	}
	return l
}

// bindingName derives a binding's object name from what it grants, so Bind
// is idempotent: the same grant is always the same object.
func bindingName(cluster string, b reconcile.Binding) string {
	sum := sha256.Sum256([]byte(cluster + "\x00" + b.PrincipalID + "\x00" + b.Role))
	return "fleetd-" + hex.EncodeToString(sum[:8])
}

// bindingObject is the ClusterRoleTemplateBinding fleetd writes for b in the
// management cluster id's namespace.
func bindingObject(fleet, cluster, id string, b reconcile.Binding) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion":         "management.cattle.io/v3",
		"kind":               "ClusterRoleTemplateBinding",
		"metadata":           map[string]any{"name": bindingName(cluster, b), "namespace": id},
		"clusterName":        id,
		"roleTemplateName":   b.Role,
		"groupPrincipalName": b.PrincipalID,
	}}
	u.SetLabels(map[string]string{LabelFleet: fleet, LabelCluster: cluster})
	return u
}

func owned(obj metav1.Object, fleet string) bool { return obj.GetLabels()[LabelFleet] == fleet }

// machinePhase maps a Cluster API phase onto reconcile's phases.
func machinePhase(u *unstructured.Unstructured) string {
	if u.GetDeletionTimestamp() != nil {
		return reconcile.RancherMachineDeleting
	}
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	switch phase {
	case "", "Pending":
		return reconcile.RancherMachinePending
	case "Provisioning", "Provisioned":
		return reconcile.RancherMachineProvisioning
	case "Running":
		return reconcile.RancherMachineRunning
	case "Deleting", "Deleted":
		return reconcile.RancherMachineDeleting
	case "Failed":
		return reconcile.RancherMachineFailed
	}
	return phase
}

func rancherMachine(u *unstructured.Unstructured) reconcile.RancherMachine {
	node, _, _ := unstructured.NestedString(u.Object, "status", "nodeRef", "name")
	return reconcile.RancherMachine{Name: u.GetName(), Node: node, Phase: machinePhase(u)}
}
