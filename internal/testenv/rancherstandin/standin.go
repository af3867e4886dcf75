package rancherstandin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/fleetd/fleetd/internal/testenv/kubetest"
)

// TokenForm is how the stand-in issues registration tokens.
type TokenForm int

const (
	// TokenSecret is Rancher v2.15 on: the node command holds a literal
	// {token}; the token is in the Secret named by status.tokenSecretName.
	TokenSecret TokenForm = iota
	// TokenInline is Rancher before v2.15: the token is in the node command
	// (and in status.token).
	TokenInline
)

// Finalizers the stand-in holds, as Rancher's controllers hold theirs.
const (
	// ClusterFinalizer holds a deleted provisioning Cluster until the
	// cluster's Cluster API objects are gone (Rancher v2.15.0's).
	ClusterFinalizer = "auth.cattle.io/capi-resources-cleanup"
	// MachineFinalizer is Cluster API's finalizer on a Machine, set once its
	// node joined: before that a deleted Machine goes at once.
	MachineFinalizer = "machine.cluster.x-k8s.io"
	// MemberFinalizer holds an etcd Machine until its etcd member is removed
	// (Rancher's pre-terminate hook).
	MemberFinalizer = "standin.fleetd.io/etcd-member"
)

var (
	provGVR    = schema.GroupVersionResource{Group: "provisioning.cattle.io", Version: "v1", Resource: "clusters"}
	mgmtGVR    = schema.GroupVersionResource{Group: "management.cattle.io", Version: "v3", Resource: "clusters"}
	tokenGVR   = schema.GroupVersionResource{Group: "management.cattle.io", Version: "v3", Resource: "clusterregistrationtokens"}
	crtbGVR    = schema.GroupVersionResource{Group: "management.cattle.io", Version: "v3", Resource: "clusterroletemplatebindings"}
	machineGVR = schema.GroupVersionResource{Group: "cluster.x-k8s.io", Version: "v1beta2", Resource: "machines"}
)

// Options tune Start.
type Options struct {
	// Token is the Rancher API token the proxy accepts (random when empty).
	Token string
	// TokenForm chooses the registration token's form.
	TokenForm TokenForm
	// Interval is how often the controllers look (default 100ms).
	Interval time.Duration
	// Namespace holds provisioning Clusters and Machines (default fleet-default).
	Namespace string
}

// Rancher is a running stand-in: its controllers and its proxy.
type Rancher struct {
	// URL is the Rancher URL to put in fleet.yaml.
	URL string
	// Token is the API token.
	Token string
	// CAPEM is the CA to trust for URL.
	CAPEM []byte
	Proxy *Proxy

	opts Options
	dyn  dynamic.Interface
	core kubernetes.Interface

	mu      sync.Mutex
	tokens  map[string]string          // management ID → registration token
	members map[string]map[string]bool // management ID → etcd member node names
	lost    map[string]bool            // node names whose machine is gone
	retired map[string]bool            // node names whose Machine was deleted
	nodes   map[string]string          // node name → machine, of agents that registered
	offline map[string]bool            // management IDs whose agent is disconnected
	held    map[string]bool            // node names that do not join yet
	events  []Event
	worst   map[string]int // management ID → fewest ready members seen, once it had any

	cancel context.CancelFunc
	done   chan struct{}
}

// Event is something the stand-in did, in order.
type Event struct {
	Seq     int
	Kind    string // "assign-id", "register", "join", "member-removed", "node-deleted", "machine-deleted", "cluster-deleted", "pod-deleted", "quorum-lost"
	Cluster string // management ID
	Object  string
}

func (e Event) String() string { return e.Kind + " " + e.Cluster + " " + e.Object }

// Start runs the stand-in's controllers and proxy against env until Stop.
func Start(ctx context.Context, env *kubetest.Env, opts Options) (*Rancher, error) {
	if opts.Interval == 0 {
		opts.Interval = 100 * time.Millisecond
	}
	if opts.Namespace == "" {
		opts.Namespace = "fleet-default"
	}
	if opts.Token == "" {
		opts.Token = "token-" + randomString(8) + ":" + randomString(54)
	}
	// Rancher's controllers do not print the apiserver's warnings (such as
	// the one about Cluster API's finalizer name); neither does the stand-in.
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = rest.NoWarnings{}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	r := &Rancher{Token: opts.Token, CAPEM: env.CA.PEM, opts: opts, dyn: dyn, core: core,
		tokens: map[string]string{}, members: map[string]map[string]bool{}, lost: map[string]bool{}, nodes: map[string]string{}, retired: map[string]bool{}, worst: map[string]int{}, offline: map[string]bool{}, held: map[string]bool{}}
	if err := r.ensureNamespace(ctx, opts.Namespace); err != nil {
		return nil, err
	}
	p, err := StartProxy(env, opts.Token, r.availability)
	if err != nil {
		return nil, err
	}
	r.Proxy, r.URL = p, p.URL
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel, r.done = cancel, make(chan struct{})
	go r.loop(cctx)
	return r, nil
}

// Stop ends the controllers and the proxy.
func (r *Rancher) Stop() {
	r.cancel()
	<-r.done
	r.Proxy.Close()
}

func (r *Rancher) loop(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		_ = r.Step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Step runs every controller once; tests call it to settle at once. Errors
// are joined; the next step retries.
func (r *Rancher) Step(ctx context.Context) error {
	return errors.Join(r.clusters(ctx), r.machines(ctx), r.bindings(ctx), r.kubelet(ctx), r.disruption(ctx), r.checkQuorum(ctx))
}

// availability says how Rancher answers the downstream API of cluster id:
// from its management cluster's Provisioned condition, as Rancher's cluster
// manager decides, and whether its agent is connected.
func (r *Rancher) availability(id string) Availability {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mc, err := r.dyn.Resource(mgmtGVR).Get(ctx, id, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return ClusterNotFound
	case err != nil:
		return ClusterDisconnected
	case !conditionTrue(mc, "Provisioned"):
		return ClusterNotProvisioned
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.offline[id] {
		return ClusterDisconnected
	}
	return ClusterConnected
}

// Disconnect plays the agent of a management cluster losing its connection:
// Rancher answers the cluster's API with 503 ClusterUnavailable until
// Reconnect.
func (r *Rancher) Disconnect(id string) {
	r.mu.Lock()
	r.offline[id] = true
	r.mu.Unlock()
}

// HoldJoin keeps a registered machine's node from joining (RKE2 still
// starting) until ReleaseJoin.
func (r *Rancher) HoldJoin(node string) {
	r.mu.Lock()
	r.held[node] = true
	r.mu.Unlock()
}

// ReleaseJoin ends HoldJoin.
func (r *Rancher) ReleaseJoin(node string) {
	r.mu.Lock()
	delete(r.held, node)
	r.mu.Unlock()
}

// Reconnect ends Disconnect.
func (r *Rancher) Reconnect(id string) {
	r.mu.Lock()
	delete(r.offline, id)
	r.mu.Unlock()
}

func conditionTrue(u *unstructured.Unstructured, t string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == t {
			return m["status"] == "True"
		}
	}
	return false
}

func (r *Rancher) record(kind, cluster, object string) {
	r.mu.Lock()
	r.events = append(r.events, Event{Seq: len(r.events) + 1, Kind: kind, Cluster: cluster, Object: object})
	r.mu.Unlock()
}

// Events returns what the stand-in did, in order.
func (r *Rancher) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Members returns the etcd members of a management cluster, sorted.
func (r *Rancher) Members(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n := range r.members[id] {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// SetTokenForm chooses the form of the registration tokens of clusters
// registered from now on.
func (r *Rancher) SetTokenForm(f TokenForm) {
	r.mu.Lock()
	r.opts.TokenForm = f
	r.mu.Unlock()
}

// RegistrationToken returns the cluster's registration token (tests check it
// never leaks).
func (r *Rancher) RegistrationToken(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tokens[id]
}

func (r *Rancher) ensureNamespace(ctx context.Context, name string) error {
	_, err := r.core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// clusters plays Rancher's provisioning and management cluster controllers.
func (r *Rancher) clusters(ctx context.Context) error {
	l, err := r.dyn.Resource(provGVR).Namespace(r.opts.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var errs []error
	for i := range l.Items {
		if err := r.cluster(ctx, &l.Items[i]); err != nil {
			errs = append(errs, fmt.Errorf("standin: cluster %s: %w", l.Items[i].GetName(), err))
		}
	}
	return errors.Join(errs...)
}

func (r *Rancher) cluster(ctx context.Context, u *unstructured.Unstructured) error {
	ri := r.dyn.Resource(provGVR).Namespace(r.opts.Namespace)
	id, _, _ := unstructured.NestedString(u.Object, "status", "clusterName")
	if u.GetDeletionTimestamp() != nil {
		return r.deleteCluster(ctx, u, id)
	}
	if !slices.Contains(u.GetFinalizers(), ClusterFinalizer) {
		u.SetFinalizers(append(u.GetFinalizers(), ClusterFinalizer))
		_, err := ri.Update(ctx, u, metav1.UpdateOptions{})
		return err
	}
	if id == "" {
		id = "c-m-" + randomString(8)
		if err := r.createManagement(ctx, u.GetName(), id); err != nil {
			return err
		}
		_ = unstructured.SetNestedField(u.Object, id, "status", "clusterName")
		_ = unstructured.SetNestedField(u.Object, false, "status", "ready")
		_ = unstructured.SetNestedSlice(u.Object, clusterConditions(false, false), "status", "conditions")
		if _, err := ri.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
			return err
		}
		r.record("assign-id", id, u.GetName())
		return nil
	}
	// Ready once a control plane machine runs on a ready node; Provisioned
	// as the management cluster says (True from the first registration on).
	ready, err := r.controlPlaneReady(ctx, u.GetName(), id)
	if err != nil {
		return err
	}
	mc, err := r.dyn.Resource(mgmtGVR).Get(ctx, id, metav1.GetOptions{})
	if err != nil {
		return err
	}
	want := clusterConditions(conditionTrue(mc, "Provisioned"), ready)
	cur, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	if was, _, _ := unstructured.NestedBool(u.Object, "status", "ready"); was == ready && equalConditions(cur, want) {
		return nil
	}
	_ = unstructured.SetNestedField(u.Object, ready, "status", "ready")
	_ = unstructured.SetNestedSlice(u.Object, want, "status", "conditions")
	_, err = ri.UpdateStatus(ctx, u, metav1.UpdateOptions{})
	return err
}

// clusterConditions are the provisioning Cluster's conditions the stand-in
// keeps: Provisioned turns True when the first machine registers, Ready
// when a control plane node is ready.
func clusterConditions(provisioned, ready bool) []any {
	status := func(b bool) string {
		if b {
			return "True"
		}
		return "False"
	}
	prov := map[string]any{"type": "Provisioned", "status": status(provisioned)}
	if !provisioned {
		prov["message"] = "waiting for the first machine to register"
	}
	rdy := map[string]any{"type": "Ready", "status": status(ready)}
	if !ready {
		rdy["message"] = "waiting for a control plane node"
	}
	return []any{map[string]any{"type": "Created", "status": "True"}, prov, rdy}
}

func equalConditions(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, _ := a[i].(map[string]any)
		y, _ := b[i].(map[string]any)
		if x["type"] != y["type"] || x["status"] != y["status"] || x["message"] != y["message"] {
			return false
		}
	}
	return true
}

func (r *Rancher) controlPlaneReady(ctx context.Context, name, id string) (bool, error) {
	ms, err := r.dyn.Resource(machineGVR).Namespace(r.opts.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "cluster.x-k8s.io/cluster-name=" + name + ",rke.cattle.io/control-plane-role=true"})
	if err != nil {
		return false, err
	}
	for _, m := range ms.Items {
		node, _, _ := unstructured.NestedString(m.Object, "status", "nodeRef", "name")
		if m.GetDeletionTimestamp() == nil && node != "" && r.nodeReady(ctx, node) {
			return true, nil
		}
	}
	return false, nil
}

func (r *Rancher) nodeReady(ctx context.Context, name string) bool {
	n, err := r.core.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// createManagement creates the management cluster, its namespace and the
// registration token, as Rancher does for a new provisioning Cluster.
func (r *Rancher) createManagement(ctx context.Context, name, id string) error {
	mc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "management.cattle.io/v3", "kind": "Cluster",
		"metadata": map[string]any{"name": id},
		"spec":     map[string]any{"displayName": name, "fleetWorkspaceName": r.opts.Namespace},
	}}
	if _, err := r.dyn.Resource(mgmtGVR).Create(ctx, mc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := r.ensureNamespace(ctx, id); err != nil {
		return err
	}
	token := randomString(54)
	r.mu.Lock()
	r.tokens[id] = token
	r.members[id] = map[string]bool{}
	r.mu.Unlock()
	cmdToken := token
	status := map[string]any{}
	r.mu.Lock()
	form := r.opts.TokenForm
	r.mu.Unlock()
	if form == TokenSecret {
		// Rancher v2.15.0: crt-token-<token name>, with the token's expiry
		// beside it (empty: the default token does not expire).
		cmdToken = "{token}"
		secretName := "crt-token-default-token"
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: id}, Data: map[string][]byte{"token": []byte(token), "expiresAt": {}}}
		if _, err := r.core.CoreV1().Secrets(id).Create(ctx, sec, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		status["tokenSecretName"] = secretName
	} else {
		status["token"] = token
	}
	server := r.URL
	status["nodeCommand"] = fmt.Sprintf("curl -fL %s/system-agent-install.sh | sudo  sh -s - --server %s --label 'cattle.io/os=linux' --token %s --ca-checksum %s", server, server, cmdToken, r.Proxy.CAChecksum)
	status["insecureNodeCommand"] = fmt.Sprintf("curl --insecure -fL %s/system-agent-install.sh | sudo  sh -s - --server %s --label 'cattle.io/os=linux' --token %s", server, server, cmdToken)
	status["manifestUrl"] = server + "/v3/import/" + randomString(20) + "_" + id + ".yaml"
	crt := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "management.cattle.io/v3", "kind": "ClusterRegistrationToken",
		"metadata": map[string]any{"name": "default-token", "namespace": id},
		"spec":     map[string]any{"clusterName": id},
	}}
	created, err := r.dyn.Resource(tokenGVR).Namespace(id).Create(ctx, crt, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	created.Object["status"] = status
	_, err = r.dyn.Resource(tokenGVR).Namespace(id).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

// deleteCluster deletes the cluster's machines without draining, then its
// management objects, then lets the provisioning Cluster go.
func (r *Rancher) deleteCluster(ctx context.Context, u *unstructured.Unstructured, id string) error {
	mri := r.dyn.Resource(machineGVR).Namespace(r.opts.Namespace)
	ms, err := mri.List(ctx, metav1.ListOptions{LabelSelector: "cluster.x-k8s.io/cluster-name=" + u.GetName()})
	if err != nil {
		return err
	}
	for i := range ms.Items {
		m := &ms.Items[i]
		if m.GetDeletionTimestamp() == nil {
			if err := mri.Delete(ctx, m.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	if len(ms.Items) > 0 {
		return nil // the machine controller finishes them; look again next step
	}
	if id != "" {
		_ = r.dyn.Resource(crtbGVR).Namespace(id).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		if err := r.dyn.Resource(tokenGVR).Namespace(id).Delete(ctx, "default-token", metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err := r.dyn.Resource(mgmtGVR).Delete(ctx, id, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	u.SetFinalizers(slices.DeleteFunc(u.GetFinalizers(), func(f string) bool { return f == ClusterFinalizer }))
	if _, err := r.dyn.Resource(provGVR).Namespace(r.opts.Namespace).Update(ctx, u, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	r.record("cluster-deleted", id, u.GetName())
	return nil
}

// machines plays Cluster API's machine controller and RKE2's etcd member
// removal for deleted Machines.
func (r *Rancher) machines(ctx context.Context) error {
	mri := r.dyn.Resource(machineGVR).Namespace(r.opts.Namespace)
	ms, err := mri.List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var errs []error
	for i := range ms.Items {
		m := &ms.Items[i]
		if m.GetDeletionTimestamp() == nil {
			if err := r.join(ctx, m); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		id := m.GetLabels()["standin.fleetd.io/management-id"]
		node, _, _ := unstructured.NestedString(m.Object, "status", "nodeRef", "name")
		if slices.Contains(m.GetFinalizers(), MemberFinalizer) {
			r.mu.Lock()
			wasMember := r.members[id][node]
			delete(r.members[id], node)
			r.mu.Unlock()
			if wasMember {
				r.record("member-removed", id, node)
			}
		}
		if node != "" {
			err := r.core.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{})
			if err == nil {
				r.record("node-deleted", id, node)
			} else if !apierrors.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
		}
		if len(m.GetFinalizers()) > 0 {
			m.SetFinalizers(nil)
			if _, err := mri.Update(ctx, m, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
		}
		if node != "" {
			r.mu.Lock()
			r.retired[node] = true
			r.mu.Unlock()
		}
		r.record("machine-deleted", id, m.GetName())
	}
	// A Machine deleted before its node joined had no finalizer and went at
	// once: its agent is retired without a node to delete.
	r.mu.Lock()
	pending := map[string]string{}
	for node, machine := range r.nodes {
		if !r.retired[node] {
			pending[node] = machine
		}
	}
	r.mu.Unlock()
	for node, machine := range pending {
		if slices.ContainsFunc(ms.Items, func(m unstructured.Unstructured) bool { return m.GetName() == machine }) {
			continue
		}
		// Looked up again: the list may predate the agent's registration.
		if _, err := mri.Get(ctx, machine, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			continue
		}
		r.mu.Lock()
		r.retired[node] = true
		r.mu.Unlock()
		r.record("machine-deleted", "", machine)
	}
	return errors.Join(errs...)
}

// join plays a registered machine's node joining its cluster: RKE2 starts,
// its kubelet registers a Ready Node, and Cluster API records the node on the
// Machine (phase Running, nodeRef) and holds it with its finalizers from then
// on; an etcd node becomes an etcd member. A Machine whose node joined is
// left as it is.
func (r *Rancher) join(ctx context.Context, m *unstructured.Unstructured) error {
	if ref, _, _ := unstructured.NestedString(m.Object, "status", "nodeRef", "name"); ref != "" {
		return nil
	}
	l := m.GetLabels()
	id, nodeName := l["standin.fleetd.io/management-id"], l["rke.cattle.io/node-name"]
	if id == "" || nodeName == "" {
		return nil // not a machine the stand-in's agents registered
	}
	r.mu.Lock()
	held := r.held[nodeName]
	r.mu.Unlock()
	if held {
		return nil
	}
	etcd := l["rke.cattle.io/etcd-role"] == "true"
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{ClusterLabel: id, "kubernetes.io/hostname": nodeName}}}
	for label, role := range map[string]string{"rke.cattle.io/etcd-role": "etcd", "rke.cattle.io/control-plane-role": "control-plane", "rke.cattle.io/worker-role": "worker"} {
		if l[label] == "true" {
			node.Labels["node-role.kubernetes.io/"+role] = "true"
		}
	}
	n, err := r.core.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		n, err = r.core.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("standin: create node %s: %w", nodeName, err)
	}
	if err := r.setNodeReady(ctx, n, true); err != nil {
		return err
	}
	mri := r.dyn.Resource(machineGVR).Namespace(r.opts.Namespace)
	finalizers := []string{MachineFinalizer}
	if etcd {
		finalizers = append(finalizers, MemberFinalizer)
	}
	m.SetFinalizers(finalizers)
	updated, err := mri.Update(ctx, m, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("standin: machine %s finalizers: %w", m.GetName(), err)
	}
	_ = unstructured.SetNestedField(updated.Object, "Running", "status", "phase")
	_ = unstructured.SetNestedField(updated.Object, nodeName, "status", "nodeRef", "name")
	if _, err := mri.UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("standin: machine %s status: %w", m.GetName(), err)
	}
	if etcd {
		r.mu.Lock()
		if r.members[id] == nil {
			r.members[id] = map[string]bool{}
		}
		r.members[id][nodeName] = true
		r.mu.Unlock()
	}
	r.record("join", id, m.GetName()+" "+nodeName)
	return nil
}

// bindings plays Rancher's binding controllers: the local outcome of a
// ClusterRoleTemplateBinding completes at once; the downstream one fails
// until the cluster is provisioned, and the overall summary, measured on
// Rancher v2.15.0, stays Error after the retry that completes it.
func (r *Rancher) bindings(ctx context.Context) error {
	l, err := r.dyn.Resource(crtbGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var errs []error
	for i := range l.Items {
		b := &l.Items[i]
		if b.GetDeletionTimestamp() != nil {
			continue
		}
		remote := "Error"
		if r.availability(b.GetNamespace()) == ClusterConnected {
			remote = "Completed"
		}
		local, _, _ := unstructured.NestedString(b.Object, "status", "summaryLocal")
		cur, _, _ := unstructured.NestedString(b.Object, "status", "summaryRemote")
		if local == "Completed" && cur == remote {
			continue
		}
		st := map[string]any{"summaryLocal": "Completed", "summaryRemote": remote, "summary": "Error"}
		b.Object["status"] = st
		if _, err := r.dyn.Resource(crtbGVR).Namespace(b.GetNamespace()).UpdateStatus(ctx, b, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// kubelet deletes pods that were evicted (terminating) from stand-in nodes
// at once, and marks pods bound to a ready node Running and Ready.
func (r *Rancher) kubelet(ctx context.Context) error {
	pods, err := r.core.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var errs []error
	zero := int64(0)
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName == "" {
			continue
		}
		if p.DeletionTimestamp != nil {
			err := r.core.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			if err == nil {
				r.record("pod-deleted", p.Spec.NodeName, p.Namespace+"/"+p.Name)
			} else if !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
			continue
		}
		if p.Status.Phase == "" || p.Status.Phase == corev1.PodPending {
			p.Status.Phase = corev1.PodRunning
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
			if _, err := r.core.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// disruption keeps PodDisruptionBudget status as Kubernetes' disruption
// controller does, so the Eviction API can decide.
func (r *Rancher) disruption(ctx context.Context) error {
	pdbs, err := r.core.PolicyV1().PodDisruptionBudgets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil || len(pdbs.Items) == 0 {
		return err
	}
	var errs []error
	for i := range pdbs.Items {
		b := &pdbs.Items[i]
		sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err != nil {
			continue
		}
		pods, err := r.core.CoreV1().Pods(b.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		expected, healthy := int32(len(pods.Items)), int32(0)
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
				healthy++
			}
		}
		desired := expected
		switch {
		case b.Spec.MinAvailable != nil:
			desired = int32(b.Spec.MinAvailable.IntValue())
		case b.Spec.MaxUnavailable != nil:
			desired = expected - int32(b.Spec.MaxUnavailable.IntValue())
		}
		allowed := max(healthy-desired, 0)
		st := &b.Status
		if st.ObservedGeneration == b.Generation && st.CurrentHealthy == healthy && st.DesiredHealthy == desired && st.ExpectedPods == expected && st.DisruptionsAllowed == allowed {
			continue
		}
		st.ObservedGeneration, st.CurrentHealthy, st.DesiredHealthy, st.ExpectedPods, st.DisruptionsAllowed = b.Generation, healthy, desired, expected, allowed
		if _, err := r.core.PolicyV1().PodDisruptionBudgets(b.Namespace).UpdateStatus(ctx, b, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkQuorum records, per cluster, the fewest ready etcd members seen, and
// an event whenever fewer than a quorum of the members are ready.
func (r *Rancher) checkQuorum(ctx context.Context) error {
	r.mu.Lock()
	snap := map[string][]string{}
	for id, ms := range r.members {
		for n := range ms {
			snap[id] = append(snap[id], n)
		}
	}
	r.mu.Unlock()
	for id, members := range snap {
		ready := 0
		for _, n := range members {
			if r.nodeReady(ctx, n) {
				ready++
			}
		}
		r.mu.Lock()
		if w, ok := r.worst[id]; !ok || ready < w {
			r.worst[id] = ready
		}
		r.mu.Unlock()
		if quorum := len(members)/2 + 1; ready < quorum {
			r.record("quorum-lost", id, fmt.Sprintf("%d of %d members ready", ready, len(members)))
		}
	}
	return nil
}

// ResetQuorumWatch starts counting the fewest ready members of a cluster
// afresh (after its first members have joined).
func (r *Rancher) ResetQuorumWatch(id string) {
	r.mu.Lock()
	delete(r.worst, id)
	r.mu.Unlock()
}

// FewestReadyMembers returns the fewest ready etcd members seen in a
// cluster since its first member joined.
func (r *Rancher) FewestReadyMembers(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.worst[id]
}

const tokenAlphabet = "bcdfghjklmnpqrstvwxz2456789"

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = tokenAlphabet[int(b[i])%len(tokenAlphabet)]
	}
	return string(b)
}

// MachineName is Rancher's name for the Machine of an agent with id: custom-
// and the first 12 hex digits of sha256(id).
func MachineName(agentID string) string {
	sum := sha256.Sum256([]byte(agentID))
	return "custom-" + hex.EncodeToString(sum[:6])
}
