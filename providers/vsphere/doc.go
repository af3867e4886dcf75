// Package vsphere implements reconcile.Provider on VMware vCenter with govmomi.
package vsphere
