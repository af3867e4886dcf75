// Package rancher is fleetd's Rancher registry: it implements
// reconcile.Registry over Rancher's Kubernetes API (the local cluster at
// <rancher.url>/k8s/clusters/local) with client-go's dynamic client. It
// registers provisioning Clusters, reads registration tokens to build node
// commands, binds LDAP groups with ClusterRoleTemplateBindings, lists and
// deletes Cluster API Machines, and unregisters clusters. Only objects that
// carry the fleet's label are ever changed.
//
// Observation costs one paged list per kind per sync (provisioning clusters,
// bindings, machines), however many clusters the fleet has.
package rancher
