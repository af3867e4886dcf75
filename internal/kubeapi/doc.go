// Package kubeapi is a small typed client for the few built-in Kubernetes
// resources fleetd uses: nodes, pods, secrets, pod disruption budgets,
// evictions and leases. It stands in for client-go's generated typed
// clients, whose package k8s.io/client-go/kubernetes/scheme registers every
// API group and whose apply configurations pull in kube-openapi and
// structured-merge-diff: about 160 packages of the binary for six resources.
// Requests go through client-go's REST client (rest.Config, auth,
// rate limits, the transport's retries) with a scheme of only these types,
// and ask for protobuf as the generated clients do.
package kubeapi
