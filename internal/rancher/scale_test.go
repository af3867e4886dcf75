package rancher

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/fleetd/fleetd/reconcile"
)

// TestListCallsPerSync1000 observes a fleet of 1,000 registered clusters,
// each with a machine and a binding, as a sync does (Clusters, then Machines
// of every cluster), and counts the requests at Rancher's proxy: one paged
// list per kind, no call per cluster.
func TestListCallsPerSync1000(t *testing.T) {
	rs := needRancher(t)
	const n, ns = 1000, "fleet-scale"
	ensureNamespace(t, ns)
	ctx := context.Background()
	d := admin(t)
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name, id := fmt.Sprintf("scale-%04d", i), fmt.Sprintf("c-m-scale%04d", i)
			c := clusterObject("acme", ns, reconcile.RegisterSpec{Name: name, Team: "t", KubernetesVersion: "v1.31.4+rke2r1"})
			created, err := d.Resource(ProvisioningClusterGVR).Namespace(ns).Create(ctx, c, metav1.CreateOptions{})
			if err != nil {
				errc <- err
				return
			}
			_ = unstructured.SetNestedField(created.Object, id, "status", "clusterName")
			_ = unstructured.SetNestedField(created.Object, true, "status", "ready")
			if _, err := d.Resource(ProvisioningClusterGVR).Namespace(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				errc <- err
				return
			}
			m := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "cluster.x-k8s.io/v1beta2", "kind": "Machine",
				"metadata": map[string]any{"name": reconcile.RancherMachineName(name + "-m1"), "namespace": ns, "labels": map[string]any{LabelCAPICluster: name}},
				"spec":     map[string]any{"clusterName": name},
			}}
			if _, err := d.Resource(MachineGVR("v1beta2")).Namespace(ns).Create(ctx, m, metav1.CreateOptions{}); err != nil {
				errc <- err
				return
			}
			if i%4 == 0 { // a binding on every fourth cluster keeps the setup short
				ensureNamespace(t, id)
				b := bindingObject("acme", name, id, reconcile.Binding{PrincipalID: "openldap_group://cn=t", Role: "cluster-member"})
				if _, err := d.Resource(CRTBGVR).Namespace(id).Create(ctx, b, metav1.CreateOptions{}); err != nil {
					errc <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	t.Logf("created %d clusters with their machines in %v", n, time.Since(start).Round(time.Millisecond))

	r := newRegistry(t, ns, nil)
	rs.Proxy.ResetCounts()
	start = time.Now()
	cs, err := r.Clusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	machines := 0
	for _, c := range cs {
		ms, err := r.Machines(ctx, c.Name)
		if err != nil {
			t.Fatal(err)
		}
		machines += len(ms)
	}
	took := time.Since(start)
	counts := rs.Proxy.Counts()
	if len(cs) != n || machines != n {
		t.Fatalf("observed %d clusters and %d machines, want %d of each", len(cs), machines, n)
	}
	var keys []string
	lists := 0
	for k, v := range counts {
		keys = append(keys, fmt.Sprintf("%s=%d", k, v))
		if len(k) > 11 && k[:11] == "local list " {
			lists += v
		}
	}
	sort.Strings(keys)
	t.Logf("one observation of %d clusters: %d requests to Rancher (%d lists) in %v: %v", n, counts["total"], lists, took.Round(time.Millisecond), keys)
	// Pages of 500: 2 of clusters, 2 of machines, bindings of the whole
	// server (a few pages), plus discovery of the Machine version.
	if counts["total"] > 12 {
		t.Errorf("%d requests for one observation of %d clusters, want one paged list per kind", counts["total"], n)
	}
}
