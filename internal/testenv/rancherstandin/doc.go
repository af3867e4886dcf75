// Package rancherstandin is a stand-in for Rancher, for tests and the demo
// only (never the fleetd binary): on a bare kube-apiserver (internal/kubetest)
// nothing plays Rancher's controllers, so this package does what Rancher does
// with the objects fleetd touches, in Rancher's formats:
//
//   - a provisioning Cluster gets a management ID (status.clusterName
//     c-m-xxxxxxxx), a management Cluster, a namespace and a default-token
//     ClusterRegistrationToken whose node command is Rancher's exact one:
//     the token inline (before v2.15) or a literal {token} with the token in
//     the Secret crt-token-default-token (keys token and expiresAt) that
//     status.tokenSecretName names (v2.15 on);
//   - an Agent that runs a machine's cloud-init node command registers it:
//     its Cluster API Machine (custom-<12 hex of sha256(CATTLE_ID)>, with
//     Rancher's labels) with no finalizer, phase or nodeRef; the first
//     registration provisions the cluster (condition Provisioned). At the
//     next Step its node joins: a Ready downstream Node, the Machine's phase,
//     nodeRef and finalizers, and for etcd an etcd member;
//   - a Machine deleted before its node joined goes at once; after, an etcd
//     Machine is held by a finalizer until its etcd member is removed, then
//     its Node is deleted; a deleted provisioning Cluster is held by the
//     auth.cattle.io/capi-resources-cleanup finalizer until its Machines
//     (undrained) and management objects are gone;
//   - a ClusterRoleTemplateBinding gets status.summaryLocal Completed, while
//     status.summary stays Error (as measured on v2.15.0);
//   - a kubelet stand-in deletes pods once they are evicted and keeps
//     PodDisruptionBudget status, as the disruption controller would;
//   - a Proxy serves <url>/k8s/clusters/local and /k8s/clusters/<id> in
//     front of the apiserver, checking the API token, and counts requests;
//     a downstream cluster's API answers 503 with a Status of reason
//     ClusterUnavailable ("cluster not provisioned") until its first machine
//     registered, and again while its agent is disconnected (Disconnect).
//
// One apiserver holds both Rancher's local cluster and every downstream
// cluster: downstream Nodes carry the label ClusterLabel and the proxy scopes
// node lists under /k8s/clusters/<id> to that cluster's nodes.
package rancherstandin
