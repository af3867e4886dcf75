package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fleetd/fleetd/internal/kubeapi"
	"github.com/fleetd/fleetd/reconcile"
)

// mirrorPodAnnotation marks a static pod's mirror: the kubelet owns it and
// the API cannot evict it.
const mirrorPodAnnotation = "kubernetes.io/config.mirror"

// Waits a drain asks for before it is checked again.
const (
	drainPollAfter = 5 * time.Second  // pods are terminating
	drainPDBAfter  = 30 * time.Second // a PodDisruptionBudget refuses evictions
)

// Drain moves a node one step towards drained, as Cluster API's machine
// controller does: it cordons the node by a patch, lists the node's pods,
// skips those a drain leaves (DaemonSet pods, static pods' mirrors, pods
// that have finished) and asks the Eviction API (policy/v1) to evict each
// of the others, which respects PodDisruptionBudgets. It never deletes a pod
// itself and never forces: a pod without a controller stops the drain with
// an error naming it. It waits at most the configured DrainWait (a few
// seconds) for the evicted pods to go; while any remain it returns a
// *reconcile.WaitError that names what is left, or the
// PodDisruptionBudgets refusing their eviction (HTTP 429), and the next sync
// takes the next step. A node that is gone, or has nothing left to evict, is
// drained: Drain returns nil, so it is idempotent.
func (n *Nodes) Drain(ctx context.Context, cluster reconcile.ClusterRef, node string) error {
	c, err := n.client(cluster)
	if err != nil {
		return err
	}
	log := n.log
	if l, ok := reconcile.ContextLogger(ctx); ok {
		log = l // the sync's, with the cluster and revision
	}
	log = log.With("node", node)
	obj := cluster.Name + "/" + node
	nd, err := c.Nodes().Get(ctx, node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return n.fail("get node", obj, err)
	}
	if !nd.Spec.Unschedulable {
		patch := []byte(`{"spec":{"unschedulable":true}}`)
		if _, err := c.Nodes().Patch(ctx, node, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return n.fail("cordon node", obj, err)
		}
		log.Info("Cordoned node")
	}

	pods, err := n.podsToEvict(ctx, c, node)
	if err != nil {
		return n.fail("list pods of node", obj, err)
	}
	if len(pods) == 0 {
		return nil
	}
	if bare := unmanaged(pods); len(bare) > 0 {
		// Such a pod would be gone for good: a person moves or deletes it.
		return fmt.Errorf("kube: drain node %s: pods without a controller are never evicted by fleetd: %s", obj, strings.Join(bare, ", "))
	}
	var refused []*corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue // evicted already, terminating
		}
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
		err := c.Evict(ctx, ev)
		switch {
		case err == nil:
			log.Info("Evicted pod", "pod", p.Namespace+"/"+p.Name)
		case apierrors.IsNotFound(err):
		case apierrors.IsTooManyRequests(err): // by reason or by HTTP 429
			// A PodDisruptionBudget allows no disruption now.
			refused = append(refused, p)
		default:
			return n.fail("evict pod", p.Namespace+"/"+p.Name+" from "+obj, err)
		}
	}
	if len(refused) > 0 {
		pdbs, err := blockingBudgets(ctx, c, refused)
		if err != nil {
			log.Warn("Cannot read all the disruption budgets of a node that does not drain", "error", err.Error())
		}
		why := "its PodDisruptionBudgets"
		if len(pdbs) > 0 {
			why = "PodDisruptionBudget " + strings.Join(pdbs, ", ")
		}
		return &reconcile.WaitError{
			Reason: fmt.Sprintf("drain of node %s is blocked by %s: %s of %s cannot be evicted now", node, why, count(len(refused), "pod"), count(len(pods), "pod")),
			After:  drainPDBAfter,
		}
	}
	left, err := n.waitGone(ctx, c, node)
	if err != nil {
		return n.fail("list pods of node", obj, err)
	}
	if left == 0 {
		return nil
	}
	return &reconcile.WaitError{Reason: fmt.Sprintf("drain of node %s: %s still terminating", node, count(left, "pod")), After: drainPollAfter}
}

// waitGone waits up to drainWait for the node's evictable pods to be gone
// and returns how many are left.
func (n *Nodes) waitGone(ctx context.Context, c *kubeapi.Client, node string) (int, error) {
	deadline := time.Now().Add(n.drainWait)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		pods, err := n.podsToEvict(ctx, c, node)
		if err != nil || len(pods) == 0 || !time.Now().Before(deadline) {
			return len(pods), err
		}
		select {
		case <-ctx.Done():
			return len(pods), nil
		case <-tick.C:
		}
	}
}

// podsToEvict lists the pods of node that a drain must evict, in pages.
func (n *Nodes) podsToEvict(ctx context.Context, c *kubeapi.Client, node string) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	opts := metav1.ListOptions{FieldSelector: "spec.nodeName=" + node, Limit: n.pageSize}
	for {
		l, err := c.Pods(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			if p := &l.Items[i]; evictable(p) {
				out = append(out, p)
			}
		}
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
}

// evictable reports whether a drain evicts p: not a DaemonSet's pod (its
// controller would start it again on the node), not a static pod's mirror,
// not a pod that has finished.
func evictable(p *corev1.Pod) bool {
	if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "DaemonSet" {
		return false
	}
	if _, ok := p.Annotations[mirrorPodAnnotation]; ok {
		return false
	}
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

// unmanaged lists, as namespace/name, the pods without a controller.
func unmanaged(pods []*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		if metav1.GetControllerOf(p) == nil {
			out = append(out, p.Namespace+"/"+p.Name)
		}
	}
	return out
}

// blockingBudgets returns namespace/name of the PodDisruptionBudgets that
// select any of pods.
func blockingBudgets(ctx context.Context, c *kubeapi.Client, pods []*corev1.Pod) ([]string, error) {
	type budget struct {
		name string
		sel  labels.Selector
	}
	byNS := map[string][]budget{}
	var out []string
	var unreadable []error
	for _, p := range pods {
		bs, ok := byNS[p.Namespace]
		if !ok {
			l, err := c.PodDisruptionBudgets(p.Namespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return nil, err
			}
			for j := range l.Items {
				sel, err := metav1.LabelSelectorAsSelector(l.Items[j].Spec.Selector)
				if err != nil {
					// The API server refuses such a selector; should one
					// pass, it is reported, and the others still named.
					unreadable = append(unreadable, fmt.Errorf("kube: selector of PodDisruptionBudget %s/%s: %w", p.Namespace, l.Items[j].Name, err))
					continue
				}
				bs = append(bs, budget{name: p.Namespace + "/" + l.Items[j].Name, sel: sel})
			}
			byNS[p.Namespace] = bs
		}
		for _, b := range bs {
			if !b.sel.Empty() && b.sel.Matches(labels.Set(p.Labels)) && !slices.Contains(out, b.name) {
				out = append(out, b.name)
			}
		}
	}
	slices.Sort(out)
	return out, errors.Join(unreadable...)
}

func count(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
