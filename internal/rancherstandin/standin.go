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

	"github.com/fleetd/fleetd/internal/kubetest"
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
	ClusterFinalizer = "standin.fleetd.io/rancher"
	// MachineFinalizer is Cluster API's finalizer on every Machine.
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
	events  []Event
	worst   map[string]int // management ID → fewest ready members seen, once it had any

	cancel context.CancelFunc
	done   chan struct{}
}

// Event is something the stand-in did, in order.
type Event struct {
	Seq     int
	Kind    string // "assign-id", "register", "member-removed", "node-deleted", "machine-deleted", "cluster-deleted", "pod-deleted", "quorum-lost"
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
		tokens: map[string]string{}, members: map[string]map[string]bool{}, lost: map[string]bool{}, nodes: map[string]string{}, retired: map[string]bool{}, worst: map[string]int{}}
	if err := r.ensureNamespace(ctx, opts.Namespace); err != nil {
		return nil, err
	}
	p, err := StartProxy(env, opts.Token, r.known)
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
	return errors.Join(r.clusters(ctx), r.machines(ctx), r.kubelet(ctx), r.disruption(ctx), r.checkQuorum(ctx))
}

func (r *Rancher) known(id string) bool {
	_, err := r.dyn.Resource(mgmtGVR).Get(context.Background(), id, metav1.GetOptions{})
	return err == nil
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
		_ = unstructured.SetNestedSlice(u.Object, []any{
			map[string]any{"type": "Created", "status": "True"},
			map[string]any{"type": "Ready", "status": "False", "message": "waiting for a control plane node"},
		}, "status", "conditions")
		if _, err := ri.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
			return err
		}
		r.record("assign-id", id, u.GetName())
		return nil
	}
	// Ready once a control plane machine runs on a ready node.
	ready, err := r.controlPlaneReady(ctx, u.GetName(), id)
	if err != nil {
		return err
	}
	if cur, _, _ := unstructured.NestedBool(u.Object, "status", "ready"); cur != ready {
		_ = unstructured.SetNestedField(u.Object, ready, "status", "ready")
		st, msg := "True", ""
		if !ready {
			st, msg = "False", "waiting for a control plane node"
		}
		_ = unstructured.SetNestedSlice(u.Object, []any{
			map[string]any{"type": "Created", "status": "True"},
			map[string]any{"type": "Ready", "status": st, "message": msg},
		}, "status", "conditions")
		_, err := ri.UpdateStatus(ctx, u, metav1.UpdateOptions{})
		return err
	}
	return nil
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
		cmdToken = "{token}"
		secretName := "crt-default-token-" + randomString(5)
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName, Namespace: id}, Data: map[string][]byte{"token": []byte(token)}}
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
