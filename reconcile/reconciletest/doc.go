// Package reconciletest holds in-memory fakes of the reconciler's interfaces with
// a call log and fault injection, shared by the tests of every package.
package reconciletest
