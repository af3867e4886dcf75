// Package vsphere implements reconcile.Provider on VMware vCenter with govmomi.
//
// Machines are clones of a template, placed in the folder
// <folder>/<team>/<cluster> under the provider's base folder. Ownership lives
// in the VM itself: guestinfo.fleetd.* ExtraConfig keys written in the clone
// spec, so a VM never exists without them. List reads the whole fleet with one
// property-collector retrieval over a container view of the base folder;
// Create is idempotent by name within a cluster folder; Delete checks the marks
// of every VM before it touches one.
package vsphere
