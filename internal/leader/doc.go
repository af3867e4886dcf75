// Package leader elects one leader among fleetd replicas through a
// coordination.k8s.io Lease, so that only one replica syncs the fleet at a
// time. The elector is fleetd's own, on internal/kubeapi's Lease client:
// client-go's tools/leaderelection links k8s.io/client-go/informers and with
// it the whole clientset (about 300 packages of the binary). It keeps what
// fleetd relied on there (optimistic concurrency on the Lease, expiry judged
// by the local time a change was observed, never by comparing clocks,
// release on stop) and adds what client-go leaves to the caller: the work of
// a term has ended before the Lease is released or campaigned for again, and
// a lost term is followed by a new campaign.
package leader
