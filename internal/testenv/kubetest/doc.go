// Package kubetest starts a real etcd and kube-apiserver on 127.0.0.1 for
// tests, the demo and local experiments: free ports, certificates made in a
// temporary directory, a bearer token with cluster-admin rights, and
// Rancher's CRDs (plus minimal ones of fleetd's own for the objects Rancher
// ships no YAML for) installed and established.
//
// The binaries come from hack/kube-tools (built from their Go modules and
// cached by version); FindAssets locates them and EnsureAssets builds them.
// It does not import "testing": tests wrap it in their TestMain.
package kubetest
