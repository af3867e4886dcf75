package kube

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/fleetd/fleetd/internal/rancher"
	"github.com/fleetd/fleetd/internal/testenv/kubetest"
	"github.com/fleetd/fleetd/internal/testenv/rancherstandin"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// One apiserver and one Rancher stand-in serve every test of the package.
var (
	shared  *kubetest.Shared
	standin *rancherstandin.Rancher
)

func TestMain(m *testing.M) {
	kubetest.Main(m, &shared, func(env *kubetest.Env) (func(), error) {
		rs, err := rancherstandin.Start(context.Background(), env, rancherstandin.Options{})
		if err != nil {
			return nil, err
		}
		standin = rs
		return rs.Stop, nil
	})
}

func needRancher(t *testing.T) *rancherstandin.Rancher {
	t.Helper()
	shared.Need(t)
	return standin
}

func conn(rs *rancherstandin.Rancher) *rancher.Conn {
	return rancher.NewConn(rs.URL, rs.Token, rs.CAPEM)
}

func adminClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(shared.Env.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// registered registers a cluster through the registry, waits for its ID and
// registers one agent per node with roles; it returns the cluster's reference.
func registered(t *testing.T, cluster string, nodes map[string][]string) reconcile.ClusterRef {
	t.Helper()
	rs := needRancher(t)
	ctx := context.Background()
	reg, err := rancher.NewWithConn(ctx, rancher.Config{Fleet: "acme", Spec: schema.Rancher{URL: rs.URL, AuthProvider: "openldap"}}, conn(rs))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Register(ctx, reconcile.RegisterSpec{Name: cluster, Team: "t", KubernetesVersion: "v1.31.4+rke2r1"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		cmd, err := reg.JoinCommand(ctx, cluster, []string{"worker"})
		if err == nil {
			_ = cmd
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for node, roles := range nodes {
		cmd, err := reg.JoinCommand(ctx, cluster, roles)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rs.Register(ctx, reconcile.CloudInit(node, cmd)); err != nil {
			t.Fatal(err)
		}
	}
	// A node joins when the stand-in next steps, as a real agent's does a
	// while after registration; the tests drain and read joined nodes.
	core := adminClient(t)
	for node := range nodes {
		for {
			_, err := core.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s never joined: %v", node, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cs, err := reg.Clusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Name == cluster {
			return c.Ref()
		}
	}
	t.Fatalf("cluster %s not observed", cluster)
	return reconcile.ClusterRef{}
}

// pod creates a pod bound to node, owned by a ReplicaSet (or a DaemonSet).
func pod(t *testing.T, ns, name, node string, labels map[string]string, daemon bool) {
	t.Helper()
	c := adminClient(t)
	ctx := context.Background()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	kind, owner, uid := "ReplicaSet", name+"-rs", types.UID("0b6e1f3c-0000-4000-8000-000000000001")
	if daemon {
		// Drain looks the DaemonSet up: it must exist.
		ds, err := c.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-ds", Namespace: ns},
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		kind, owner, uid = "DaemonSet", ds.Name, ds.UID
	}
	yes := true
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: owner, UID: uid, Controller: &yes}}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}}},
	}
	if _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func budget(t *testing.T, ns, name string, minAvailable int, labels map[string]string) {
	t.Helper()
	v := intstr.FromInt(minAvailable)
	_, err := adminClient(t).PolicyV1().PodDisruptionBudgets(ns).Create(context.Background(), &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &v, Selector: &metav1.LabelSelector{MatchLabels: labels}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func deleteBudget(t *testing.T, ns, name string) {
	t.Helper()
	if err := adminClient(t).PolicyV1().PodDisruptionBudgets(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}
