// Package leader elects one leader among fleetd replicas through a
// coordination.k8s.io Lease with client-go's leaderelection, so that only
// one replica syncs the fleet at a time. It adds what client-go leaves to
// the caller: the work of a term has ended before the Lease is released or
// campaigned for again, and a lost term is followed by a new campaign.
package leader
