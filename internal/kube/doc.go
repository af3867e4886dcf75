// Package kube reaches the downstream clusters of a fleet through Rancher's
// proxy (<rancher.url>/k8s/clusters/<management id>) with client-go: it reads
// node readiness and drains nodes in steps on the Eviction API (cordon by
// patch, evictions that respect PodDisruptionBudgets, DaemonSet and mirror
// pods skipped, a few seconds per call at most; the next sync takes the next
// step). It implements reconcile.Nodes.
package kube
