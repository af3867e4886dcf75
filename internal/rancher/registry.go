package rancher

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/fleetd/fleetd/internal/kubeapi"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// Config configures New.
type Config struct {
	// Fleet is the fleet's name: the value of the fleetd.io/fleet label.
	Fleet string
	// Spec is fleet.yaml's rancher block.
	Spec schema.Rancher
	// Logger receives the registry's log lines (default slog.Default()).
	Logger *slog.Logger
	// CAData, when set, is trusted instead of Spec.CAFile.
	CAData []byte
	// WrapTransport, when set, wraps the HTTP transport (tests count requests).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// PageSize bounds each list response (default 500).
	PageSize int64
}

// Registry is reconcile.Registry over Rancher's local-cluster Kubernetes API.
type Registry struct {
	fleet     string
	namespace string
	auth      string
	conn      *Conn
	log       *slog.Logger
	dyn       dynamic.Interface
	kube      *kubeapi.Client
	pageSize  int64

	mu             sync.Mutex
	machineVersion string
	// snapshot holds the machines listed by the last Clusters call, by
	// cluster; Machines hands each cluster's list out once, so observation
	// costs one list of machines per sync.
	snapshot map[string][]reconcile.RancherMachine
}

var _ reconcile.Registry = (*Registry)(nil)

// New returns the registry for cfg. It resolves the token and CA and builds
// the clients; it makes no request, so an unreachable Rancher shows up at the
// first observation.
func New(ctx context.Context, cfg Config) (*Registry, error) {
	conn, err := Connect(cfg.Spec, cfg.CAData)
	if err != nil {
		return nil, err
	}
	conn.WrapTransport = cfg.WrapTransport
	return NewWithConn(ctx, cfg, conn)
}

// NewWithConn is New with the connection already made.
func NewWithConn(_ context.Context, cfg Config, conn *Conn) (*Registry, error) {
	if cfg.Fleet == "" {
		return nil, errors.New("rancher: the fleet name is empty")
	}
	rc := conn.RESTConfig(LocalCluster)
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("rancher: client for %s: %w", conn, err)
	}
	// kubeapi's client for secrets and discovery, not client-go's typed
	// clients: they link every API group into the binary.
	kube, err := kubeapi.New(rc)
	if err != nil {
		return nil, fmt.Errorf("rancher: client for %s: %w", conn, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Registry{
		fleet:     cfg.Fleet,
		namespace: cmp.Or(cfg.Spec.Namespace, schema.DefaultRancherNamespace),
		auth:      cfg.Spec.AuthProvider,
		conn:      conn,
		log:       log.With("rancher", conn.URL),
		dyn:       dyn,
		kube:      kube,
		pageSize:  cmp.Or(cfg.PageSize, 500),
	}, nil
}

// logger is the sync's logger from ctx (with the cluster and revision the
// reconciler works on), else the registry's own; either names Rancher.
func (r *Registry) logger(ctx context.Context) *slog.Logger {
	if l, ok := reconcile.ContextLogger(ctx); ok {
		return l.With("rancher", r.conn.URL)
	}
	return r.log
}

func (r *Registry) fail(op, object string, err error) error {
	return APIError(op, object, err, r.conn.token)
}

// list pages through a resource with a label selector.
func (r *Registry) list(ctx context.Context, ri dynamic.ResourceInterface, selector, what string) ([]unstructured.Unstructured, error) {
	var out []unstructured.Unstructured
	opts := metav1.ListOptions{LabelSelector: selector, Limit: r.pageSize}
	for {
		l, err := ri.List(ctx, opts)
		if err != nil {
			return nil, r.fail("list", what, err)
		}
		out = append(out, l.Items...)
		if l.GetContinue() == "" {
			return out, nil
		}
		opts.Continue = l.GetContinue()
	}
}

// Clusters lists the fleet's provisioning Clusters, their bindings and their
// machines with one paged list of each kind. Bindings without the fleet's
// label are not returned as the fleet's; they are logged as drift and
// returned in ForeignBindings. It changes nothing.
func (r *Registry) Clusters(ctx context.Context) ([]reconcile.RancherCluster, error) {
	sel := labels.Set{LabelFleet: r.fleet}.String()
	items, err := r.list(ctx, r.dyn.Resource(ProvisioningClusterGVR).Namespace(r.namespace), sel, "provisioning clusters in "+r.namespace)
	if err != nil {
		return nil, err
	}
	out := make([]reconcile.RancherCluster, 0, len(items))
	byID := map[string]int{}
	byName := map[string]int{}
	for i := range items {
		u := &items[i]
		rc := observeCluster(u)
		if rc.ID != "" {
			byID[rc.ID] = len(out)
		}
		byName[rc.Name] = len(out)
		out = append(out, rc)
	}

	// Every binding of the fleet's clusters, fleetd's and others', in one
	// paged list over all namespaces: the namespace is the management ID.
	bindings, err := r.list(ctx, r.dyn.Resource(CRTBGVR), "", "cluster role template bindings")
	if err != nil {
		return nil, err
	}
	for i := range bindings {
		b := &bindings[i]
		idx, ok := byID[b.GetNamespace()]
		if !ok {
			continue
		}
		role, _, _ := unstructured.NestedString(b.Object, "roleTemplateName")
		principal, _, _ := unstructured.NestedString(b.Object, "groupPrincipalName")
		if principal == "" {
			principal, _, _ = unstructured.NestedString(b.Object, "userPrincipalName")
		}
		if principal == "" {
			principal, _, _ = unstructured.NestedString(b.Object, "userName")
		}
		rc := &out[idx]
		if owned(b, r.fleet) && b.GetLabels()[LabelCluster] == rc.Name && b.GetDeletionTimestamp() == nil {
			rc.Bindings = append(rc.Bindings, reconcile.Binding{PrincipalID: principal, Role: role})
			continue
		}
		if b.GetDeletionTimestamp() == nil {
			rc.ForeignBindings = append(rc.ForeignBindings, reconcile.Binding{PrincipalID: principal, Role: role})
			r.logger(ctx).Info("Binding not made by fleetd left alone", "object", rc.Name, "binding", b.GetName(), "principal", principal, "role", role)
		}
	}

	machines, err := r.listMachines(ctx, LabelCAPICluster)
	if err != nil {
		return nil, err
	}
	snap := map[string][]reconcile.RancherMachine{}
	for name := range byName {
		snap[name] = nil
	}
	for i := range machines {
		m := &machines[i]
		c := m.GetLabels()[LabelCAPICluster]
		if _, ok := byName[c]; ok {
			snap[c] = append(snap[c], rancherMachine(m))
		}
	}
	for i := range out {
		slices.SortFunc(out[i].Bindings, compareBinding)
		slices.SortFunc(out[i].ForeignBindings, compareBinding)
	}
	slices.SortFunc(out, func(a, b reconcile.RancherCluster) int { return cmp.Compare(a.Name, b.Name) })
	r.mu.Lock()
	r.snapshot = snap
	r.mu.Unlock()
	return out, nil
}

func compareBinding(a, b reconcile.Binding) int {
	return cmp.Or(cmp.Compare(a.PrincipalID, b.PrincipalID), cmp.Compare(a.Role, b.Role))
}

func observeCluster(u *unstructured.Unstructured) reconcile.RancherCluster {
	l := u.GetLabels()
	id, _, _ := unstructured.NestedString(u.Object, "status", "clusterName")
	ready, _, _ := unstructured.NestedBool(u.Object, "status", "ready")
	version, _, _ := unstructured.NestedString(u.Object, "spec", "kubernetesVersion")
	return reconcile.RancherCluster{
		Name:              u.GetName(),
		Team:              l[LabelTeam],
		ID:                id,
		Ready:             ready,
		Provisioned:       id != "" && (ready || conditionTrue(u, ConditionProvisioned)),
		Deleting:          u.GetDeletionTimestamp() != nil,
		KubernetesVersion: version,
		Protected:         l[LabelProtected] == "true",
	}
}

// conditionTrue reports whether the object's status.conditions has a
// condition of type t with status True.
func conditionTrue(u *unstructured.Unstructured, t string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == t {
			return m["status"] == "True"
		}
	}
	return false
}

// Machines returns the cluster's Cluster API machines, sorted by name. Right
// after Clusters it answers from that call's list; otherwise it lists the
// cluster's machines. It changes nothing.
func (r *Registry) Machines(ctx context.Context, cluster string) ([]reconcile.RancherMachine, error) {
	r.mu.Lock()
	ms, ok := r.snapshot[cluster]
	delete(r.snapshot, cluster)
	r.mu.Unlock()
	if !ok {
		items, err := r.listMachines(ctx, labels.Set{LabelCAPICluster: cluster}.String())
		if err != nil {
			return nil, err
		}
		for i := range items {
			ms = append(ms, rancherMachine(&items[i]))
		}
	}
	slices.SortFunc(ms, func(a, b reconcile.RancherMachine) int { return cmp.Compare(a.Name, b.Name) })
	return ms, nil
}

func (r *Registry) listMachines(ctx context.Context, selector string) ([]unstructured.Unstructured, error) {
	version, err := r.machineAPIVersion(ctx)
	if err != nil {
		return nil, err
	}
	return r.list(ctx, r.dyn.Resource(MachineGVR(version)).Namespace(r.namespace), selector, "machines in "+r.namespace)
}

// machineAPIVersion discovers which Cluster API version the server serves:
// v1beta2 in current Rancher, v1beta1 in older lines. The answer is kept.
func (r *Registry) machineAPIVersion(ctx context.Context) (string, error) {
	r.mu.Lock()
	v := r.machineVersion
	r.mu.Unlock()
	if v != "" {
		return v, nil
	}
	for _, version := range []string{"v1beta2", "v1beta1"} {
		res, err := r.kube.ServerResources(ctx, capiGroup+"/"+version)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", r.fail("discover", capiGroup+"/"+version, err)
		}
		for _, ar := range res.APIResources {
			if ar.Name == "machines" {
				r.mu.Lock()
				r.machineVersion = version
				r.mu.Unlock()
				return version, nil
			}
		}
	}
	return "", reconcile.Stalled(fmt.Errorf("rancher: %s serves no Cluster API machines (%s v1beta2 or v1beta1)", r.conn, capiGroup))
}

// getCluster returns the fleet's provisioning Cluster named name; a cluster
// that exists but is not the fleet's is an error that stalls.
func (r *Registry) getCluster(ctx context.Context, name string) (*unstructured.Unstructured, error) {
	u, err := r.dyn.Resource(ProvisioningClusterGVR).Namespace(r.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if !owned(u, r.fleet) {
		return nil, reconcile.Stalled(fmt.Errorf("rancher: cluster %s/%s exists and is not fleet %s's (no %s=%s label): fleetd leaves it alone; rename the fleet cluster or remove the Rancher cluster", r.namespace, name, r.fleet, LabelFleet, r.fleet))
	}
	return u, nil
}

// Register creates the provisioning Cluster when it is missing, and updates
// its Kubernetes version and marks when they differ, so it is idempotent. A
// cluster of that name that is not the fleet's is never changed.
func (r *Registry) Register(ctx context.Context, spec reconcile.RegisterSpec) (reconcile.RancherCluster, error) {
	obj := r.namespace + "/" + spec.Name
	want := clusterObject(r.fleet, r.namespace, spec)
	ri := r.dyn.Resource(ProvisioningClusterGVR).Namespace(r.namespace)
	u, err := r.getCluster(ctx, spec.Name)
	switch {
	case apierrors.IsNotFound(err):
		r.logger(ctx).Info("Creating provisioning cluster", "object", obj, "kubernetesVersion", spec.KubernetesVersion)
		created, err := ri.Create(ctx, want, metav1.CreateOptions{FieldManager: "fleetd"})
		if apierrors.IsAlreadyExists(err) {
			// A lost reply of an earlier try: observe what is there.
			return reconcile.RancherCluster{}, reconcile.Transient(fmt.Errorf("rancher: create cluster %s: it appeared meanwhile", obj))
		}
		if err != nil {
			return reconcile.RancherCluster{}, r.fail("create cluster", obj, err)
		}
		return observeCluster(created), nil
	case err != nil:
		var st *reconcile.StalledError
		if errors.As(err, &st) {
			return reconcile.RancherCluster{}, err
		}
		return reconcile.RancherCluster{}, r.fail("get cluster", obj, err)
	}
	if u.GetDeletionTimestamp() != nil {
		return reconcile.RancherCluster{}, &reconcile.WaitError{Reason: "cluster " + spec.Name + " is being deleted in Rancher", After: 10 * time.Second}
	}
	changed := false
	if v, _, _ := unstructured.NestedString(u.Object, "spec", "kubernetesVersion"); v != spec.KubernetesVersion {
		if err := unstructured.SetNestedField(u.Object, spec.KubernetesVersion, "spec", "kubernetesVersion"); err != nil {
			return reconcile.RancherCluster{}, err
		}
		changed = true
	}
	l := u.GetLabels()
	old := strings.Split(u.GetAnnotations()[AnnotationLabels], ",")
	for _, k := range old {
		if _, keep := spec.Labels[k]; k != "" && !keep {
			delete(l, k)
			changed = true
		}
	}
	for k, v := range want.GetLabels() {
		if l[k] != v {
			l[k] = v
			changed = true
		}
	}
	if !spec.Protected && l[LabelProtected] != "" {
		delete(l, LabelProtected)
		changed = true
	}
	a := u.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	if w := want.GetAnnotations()[AnnotationLabels]; a[AnnotationLabels] != w {
		a[AnnotationLabels] = w
		changed = true
	}
	if !changed {
		return observeCluster(u), nil
	}
	u.SetLabels(l)
	u.SetAnnotations(a)
	r.logger(ctx).Info("Updating provisioning cluster", "object", obj, "kubernetesVersion", spec.KubernetesVersion)
	updated, err := ri.Update(ctx, u, metav1.UpdateOptions{FieldManager: "fleetd"})
	if err != nil {
		return reconcile.RancherCluster{}, r.fail("update cluster", obj, err)
	}
	return observeCluster(updated), nil
}

// managementID returns the cluster's management ID, or a *WaitError while
// Rancher has not assigned one.
func (r *Registry) managementID(ctx context.Context, cluster string) (string, error) {
	u, err := r.getCluster(ctx, cluster)
	if apierrors.IsNotFound(err) {
		return "", &reconcile.WaitError{Reason: "cluster " + cluster + " is not registered in Rancher yet", After: 5 * time.Second}
	}
	var st *reconcile.StalledError
	if errors.As(err, &st) {
		return "", err
	}
	if err != nil {
		return "", r.fail("get cluster", r.namespace+"/"+cluster, err)
	}
	id, _, _ := unstructured.NestedString(u.Object, "status", "clusterName")
	if id == "" {
		return "", &reconcile.WaitError{Reason: "Rancher has not assigned cluster " + cluster + " an ID yet", After: 5 * time.Second}
	}
	return id, nil
}

// JoinCommand builds the node command for roles from the cluster's
// default-token: status.nodeCommand, with a literal {token} filled from the
// Secret status.tokenSecretName names (Rancher v2.15+), sudo removed (cloud-init
// runs it as root) and the role flags appended. The result is a secret; no
// error carries any of it. It changes nothing.
func (r *Registry) JoinCommand(ctx context.Context, cluster string, roles []string) (string, error) {
	id, err := r.managementID(ctx, cluster)
	if err != nil {
		return "", err
	}
	obj := id + "/" + DefaultTokenName
	tok, err := r.dyn.Resource(TokenGVR).Namespace(id).Get(ctx, DefaultTokenName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", &reconcile.WaitError{Reason: "Rancher has not issued the registration token of " + cluster + " yet", After: 5 * time.Second}
	}
	if err != nil {
		return "", r.fail("get registration token", obj, err)
	}
	cmd, _, _ := unstructured.NestedString(tok.Object, "status", "nodeCommand")
	if strings.TrimSpace(cmd) == "" {
		return "", &reconcile.WaitError{Reason: "the registration token of " + cluster + " has no node command yet", After: 5 * time.Second}
	}
	if strings.Contains(cmd, tokenPlaceholder) {
		secretName, _, _ := unstructured.NestedString(tok.Object, "status", "tokenSecretName")
		if secretName == "" {
			return "", &reconcile.WaitError{Reason: "the registration token of " + cluster + " names no token secret yet", After: 5 * time.Second}
		}
		sec, err := r.kube.Secrets(id).Get(ctx, secretName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return "", &reconcile.WaitError{Reason: "the registration token secret of " + cluster + " does not exist yet", After: 5 * time.Second}
		}
		if err != nil {
			return "", r.fail("get registration token secret", id+"/"+secretName, err)
		}
		value := strings.TrimSpace(string(sec.Data["token"]))
		if value == "" {
			return "", reconcile.Stalled(fmt.Errorf("rancher: registration token secret %s/%s has no key token", id, secretName))
		}
		cmd = strings.ReplaceAll(cmd, tokenPlaceholder, value)
	}
	return nodeCommand(cmd, roles)
}

// nodeCommand turns Rancher's node command into the one cloud-init runs as
// root, with the role flags.
func nodeCommand(cmd string, roles []string) (string, error) {
	cmd = strings.TrimSpace(cmd)
	if !strings.HasPrefix(cmd, "curl ") || strings.ContainsAny(cmd, "\n\r") || !strings.Contains(cmd, "--token ") {
		// Never quote the command: it holds the token.
		return "", reconcile.Stalled(errors.New("rancher: the registration token's node command is not in the form fleetd knows (curl ... | sudo sh -s - ... --token ...)"))
	}
	// cloud-init runs commands as root: drop sudo, keep the rest as Rancher wrote it.
	fields := strings.Fields(cmd)
	out := fields[:0]
	for _, f := range fields {
		if f != "sudo" {
			out = append(out, f)
		}
	}
	var b strings.Builder
	b.WriteString(strings.Join(out, " "))
	for _, role := range []string{"etcd", "controlplane", "worker"} {
		if slices.Contains(roles, role) {
			b.WriteString(" --" + role)
		}
	}
	for _, role := range roles {
		if role != "etcd" && role != "controlplane" && role != "worker" {
			return "", reconcile.Stalled(fmt.Errorf("rancher: unknown node role %q", role))
		}
	}
	if len(roles) == 0 {
		return "", reconcile.Stalled(errors.New("rancher: a node needs at least one role"))
	}
	return b.String(), nil
}

// Bind creates the binding's ClusterRoleTemplateBinding; one that exists is a
// success, so Bind is idempotent. Bindings are immutable in Rancher: a changed
// role is an Unbind of the old and a Bind of the new.
func (r *Registry) Bind(ctx context.Context, cluster string, b reconcile.Binding) error {
	id, err := r.managementID(ctx, cluster)
	if err != nil {
		return err
	}
	want := bindingObject(r.fleet, cluster, id, b)
	obj := id + "/" + want.GetName()
	ri := r.dyn.Resource(CRTBGVR).Namespace(id)
	_, err = ri.Create(ctx, want, metav1.CreateOptions{FieldManager: "fleetd"})
	if err == nil {
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return r.fail("create binding", obj, err)
	}
	got, err := ri.Get(ctx, want.GetName(), metav1.GetOptions{})
	if err != nil {
		return r.fail("get binding", obj, err)
	}
	if !owned(got, r.fleet) {
		return reconcile.Stalled(fmt.Errorf("rancher: binding %s exists and is not fleet %s's", obj, r.fleet))
	}
	if got.GetDeletionTimestamp() != nil {
		return &reconcile.WaitError{Reason: "binding " + obj + " is being deleted", After: 2 * time.Second}
	}
	return nil
}

// Unbind deletes the binding's ClusterRoleTemplateBinding when it is the
// fleet's; one that is gone is a success, so Unbind is idempotent. A binding
// without the fleet's label is never deleted.
func (r *Registry) Unbind(ctx context.Context, cluster string, b reconcile.Binding) error {
	id, err := r.managementID(ctx, cluster)
	var wait *reconcile.WaitError
	if errors.As(err, &wait) {
		return nil // no ID, no binding
	}
	if err != nil {
		return err
	}
	ri := r.dyn.Resource(CRTBGVR).Namespace(id)
	// fleetd's own bindings of this grant: by derived name, and any other
	// labelled one that grants the same (made by an older fleetd).
	items, err := r.list(ctx, ri, labels.Set{LabelFleet: r.fleet, LabelCluster: cluster}.String(), "bindings in "+id)
	if err != nil {
		return err
	}
	for i := range items {
		u := &items[i]
		role, _, _ := unstructured.NestedString(u.Object, "roleTemplateName")
		principal, _, _ := unstructured.NestedString(u.Object, "groupPrincipalName")
		if role != b.Role || principal != b.PrincipalID || u.GetDeletionTimestamp() != nil {
			continue
		}
		uid := u.GetUID()
		err := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return r.fail("delete binding", id+"/"+u.GetName(), err)
		}
	}
	return nil
}

// DeleteMachine deletes the cluster's Cluster API machine; with excludeDrain
// it first annotates it so Cluster API neither drains the node nor waits for
// volumes. A machine that is gone or already deleting is a success, so
// DeleteMachine is idempotent. A machine of another cluster is never deleted.
func (r *Registry) DeleteMachine(ctx context.Context, cluster, machine string, excludeDrain bool) error {
	if _, err := r.getCluster(ctx, cluster); err != nil && !apierrors.IsNotFound(err) {
		var st *reconcile.StalledError
		if errors.As(err, &st) {
			return err
		}
		return r.fail("get cluster", r.namespace+"/"+cluster, err)
	}
	version, err := r.machineAPIVersion(ctx)
	if err != nil {
		return err
	}
	obj := r.namespace + "/" + machine
	ri := r.dyn.Resource(MachineGVR(version)).Namespace(r.namespace)
	u, err := ri.Get(ctx, machine, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return r.fail("get machine", obj, err)
	}
	if got := u.GetLabels()[LabelCAPICluster]; got != cluster {
		return reconcile.Stalled(fmt.Errorf("rancher: machine %s belongs to cluster %q, not %s: left alone", obj, got, cluster))
	}
	if u.GetDeletionTimestamp() != nil {
		return nil
	}
	if excludeDrain {
		a := u.GetAnnotations()
		if a[AnnotationExcludeDrain] == "" || a[AnnotationExcludeDetach] == "" {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"true",%q:"true"}}}`, AnnotationExcludeDrain, AnnotationExcludeDetach)
			if _, err := ri.Patch(ctx, machine, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "fleetd"}); err != nil {
				if apierrors.IsNotFound(err) {
					return nil
				}
				return r.fail("annotate machine", obj, err)
			}
		}
	}
	uid := u.GetUID()
	err = ri.Delete(ctx, machine, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return r.fail("delete machine", obj, err)
	}
	return nil
}

// Unregister deletes the fleet's provisioning Cluster; Rancher then deletes
// the management cluster and its machines. A cluster that is gone or already
// deleting is a success, so Unregister is idempotent.
func (r *Registry) Unregister(ctx context.Context, cluster string) error {
	obj := r.namespace + "/" + cluster
	u, err := r.getCluster(ctx, cluster)
	if apierrors.IsNotFound(err) {
		return nil
	}
	var st *reconcile.StalledError
	if errors.As(err, &st) {
		return err
	}
	if err != nil {
		return r.fail("get cluster", obj, err)
	}
	if u.GetDeletionTimestamp() != nil {
		return nil
	}
	uid := u.GetUID()
	err = r.dyn.Resource(ProvisioningClusterGVR).Namespace(r.namespace).Delete(ctx, cluster, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return r.fail("delete cluster", obj, err)
	}
	return nil
}
