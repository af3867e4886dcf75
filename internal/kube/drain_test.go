package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/fleetd/fleetd/reconcile"
)

// TestReady reads node readiness through /k8s/clusters/<id>, and sees only
// the cluster's own nodes.
func TestReady(t *testing.T) {
	rs := needRancher(t)
	a := registered(t, "ready-a", map[string][]string{"ready-a-n1": {"etcd", "controlplane", "worker"}, "ready-a-n2": {"worker"}})
	registered(t, "ready-b", map[string][]string{"ready-b-n1": {"etcd", "controlplane", "worker"}})
	n := NewWithConn(Config{}, conn(rs))
	ctx := context.Background()
	if err := rs.NodeLost(ctx, "ready-a-n2"); err != nil {
		t.Fatal(err)
	}
	got, err := n.Ready(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got["ready-a-n1"] || got["ready-a-n2"] {
		t.Fatalf("Ready = %v, want ready-a-n1 ready and ready-a-n2 not", got)
	}
	if _, err := n.Ready(ctx, reconcile.ClusterRef{Name: "nope", ID: "c-m-nope"}); err == nil {
		t.Error("an unknown cluster ID answered")
	}
	var wait *reconcile.WaitError
	if _, err := n.Ready(ctx, reconcile.ClusterRef{Name: "no-id"}); !errors.As(err, &wait) {
		t.Errorf("a cluster without ID: %v, want a *WaitError", err)
	}
}

// TestDrain drains a node: it is cordoned, its pods are evicted (the
// DaemonSet's stays), and draining again or draining a gone node succeeds.
func TestDrain(t *testing.T) {
	rs := needRancher(t)
	ref := registered(t, "drain-a", map[string][]string{"drain-a-n1": {"etcd", "controlplane", "worker"}, "drain-a-n2": {"worker"}})
	pod(t, "drain-a", "web-1", "drain-a-n2", map[string]string{"app": "web"}, false)
	pod(t, "drain-a", "web-2", "drain-a-n2", map[string]string{"app": "web"}, false)
	pod(t, "drain-a", "logs-1", "drain-a-n2", map[string]string{"app": "logs"}, true)
	n := NewWithConn(Config{}, conn(rs))
	ctx := context.Background()
	drainUntilDone(t, n, ref, "drain-a-n2")
	c := adminClient(t)
	node, err := c.CoreV1().Nodes().Get(ctx, "drain-a-n2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !node.Spec.Unschedulable {
		t.Error("the node is not cordoned")
	}
	pods, _ := c.CoreV1().Pods("drain-a").List(ctx, metav1.ListOptions{})
	var left []string
	for _, p := range pods.Items {
		left = append(left, p.Name)
	}
	if len(left) != 1 || left[0] != "logs-1" {
		t.Errorf("pods left %v, want only the DaemonSet's logs-1", left)
	}
	if err := n.Drain(ctx, ref, "drain-a-n2"); err != nil {
		t.Errorf("draining a drained node: %v", err)
	}
	if err := n.Drain(ctx, ref, "drain-a-gone"); err != nil {
		t.Errorf("draining a gone node: %v", err)
	}
}

// TestDrainBlockedByPDB: a PodDisruptionBudget that allows no disruption
// stops the drain within the timeout with a *WaitError naming it, and the
// pod stays.
func TestDrainBlockedByPDB(t *testing.T) {
	rs := needRancher(t)
	ref := registered(t, "pdb-a", map[string][]string{"pdb-a-n1": {"etcd", "controlplane", "worker"}})
	pod(t, "pdb-a", "db-1", "pdb-a-n1", map[string]string{"app": "db"}, false)
	c := adminClient(t)
	ctx := context.Background()
	one := intstr.FromInt32(1)
	_, err := c.PolicyV1().PodDisruptionBudgets("pdb-a").Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "db-quorum", Namespace: "pdb-a"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Let the stand-in's disruption controller compute the budget's status.
	time.Sleep(500 * time.Millisecond)
	n := NewWithConn(Config{}, conn(rs))
	err = n.Drain(ctx, ref, "pdb-a-n1")
	var wait *reconcile.WaitError
	if !errors.As(err, &wait) || !strings.Contains(err.Error(), "PodDisruptionBudget pdb-a/db-quorum") {
		t.Fatalf("Drain = %v, want a *WaitError naming PodDisruptionBudget pdb-a/db-quorum", err)
	}
	if _, err := c.CoreV1().Pods("pdb-a").Get(ctx, "db-1", metav1.GetOptions{}); err != nil {
		t.Errorf("the protected pod is gone: %v", err)
	}
	p, _ := c.CoreV1().Pods("pdb-a").Get(ctx, "db-1", metav1.GetOptions{})
	if p != nil && p.DeletionTimestamp != nil {
		t.Error("the protected pod is being deleted: the drain forced it")
	}
}

// drainUntilDone takes drain steps as syncs would, until the node is
// drained: every step before the last is a wait, never a failure.
func drainUntilDone(t *testing.T, n *Nodes, ref reconcile.ClusterRef, node string) {
	t.Helper()
	for range 20 {
		err := n.Drain(context.Background(), ref, node)
		if err == nil {
			return
		}
		var wait *reconcile.WaitError
		if !errors.As(err, &wait) {
			t.Fatalf("drain step of %s: %v, want nil or a *WaitError", node, err)
		}
	}
	t.Fatalf("node %s does not drain in 20 steps", node)
}

// TestDrainSkipsWhatADrainLeaves: a static pod's mirror and finished pods
// stay on the node and do not hold the drain back; a pod without a
// controller stops it with an error that names it, and is not evicted.
func TestDrainSkipsWhatADrainLeaves(t *testing.T) {
	rs := needRancher(t)
	ref := registered(t, "skip-a", map[string][]string{"skip-a-n1": {"etcd", "controlplane", "worker"}})
	c := adminClient(t)
	ctx := context.Background()
	pod(t, "skip-a", "web-1", "skip-a-n1", map[string]string{"app": "web"}, false)
	mirror := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "etcd-skip-a-n1", Namespace: "skip-a",
			Annotations: map[string]string{mirrorPodAnnotation: "d41d8cd98f00b204e9800998ecf8427e"}},
		Spec: corev1.PodSpec{NodeName: "skip-a-n1", Containers: []corev1.Container{{Name: "etcd", Image: "registry.invalid/etcd:1"}}},
	}
	if _, err := c.CoreV1().Pods("skip-a").Create(ctx, mirror, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "job-1", Namespace: "skip-a"},
		Spec:       corev1.PodSpec{NodeName: "skip-a-n1", RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "job", Image: "registry.invalid/job:1"}}},
	}
	created, err := c.CoreV1().Pods("skip-a").Create(ctx, done, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Phase = corev1.PodSucceeded
	if _, err := c.CoreV1().Pods("skip-a").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	n := NewWithConn(Config{}, conn(rs))
	drainUntilDone(t, n, ref, "skip-a-n1")
	for _, name := range []string{"etcd-skip-a-n1", "job-1"} {
		if _, err := c.CoreV1().Pods("skip-a").Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("pod %s: %v; a drain leaves it", name, err)
		}
	}
	if _, err := c.CoreV1().Pods("skip-a").Get(ctx, "web-1", metav1.GetOptions{}); err == nil {
		t.Error("web-1 is still on the drained node")
	}

	bare := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "debug", Namespace: "skip-a"},
		Spec:       corev1.PodSpec{NodeName: "skip-a-n1", Containers: []corev1.Container{{Name: "sh", Image: "registry.invalid/sh:1"}}},
	}
	if _, err := c.CoreV1().Pods("skip-a").Create(ctx, bare, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = n.Drain(ctx, ref, "skip-a-n1")
	var wait *reconcile.WaitError
	if err == nil || errors.As(err, &wait) || !strings.Contains(err.Error(), "skip-a/debug") {
		t.Fatalf("drain with a pod without a controller: %v, want an error naming skip-a/debug", err)
	}
	if p, err := c.CoreV1().Pods("skip-a").Get(ctx, "debug", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Errorf("the pod without a controller was evicted: %v", err)
	}
}
