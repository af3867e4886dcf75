// Package kube reaches the downstream clusters of a fleet through Rancher's
// proxy (<rancher.url>/k8s/clusters/<management id>) with client-go: it reads
// node readiness and drains nodes with k8s.io/kubectl/pkg/drain (cordon, the
// Eviction API that respects PodDisruptionBudgets, DaemonSet pods skipped, a
// bounded timeout). It implements reconcile.Nodes.
package kube
