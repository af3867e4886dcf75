package schema

import "strconv"

// MachineHashLen is how many characters of a machine template's hash a
// machine name carries.
const MachineHashLen = 5

// MaxMachineNameLen is the longest machine name: machine names become host
// and Kubernetes node names, which are DNS labels.
const MaxMachineNameLen = 63

// MachinePrefix returns the common prefix of the machines of one pool and
// template: <cluster>-<pool>-<hash5>-.
func MachinePrefix(cluster, pool, templateHash string) string {
	h := templateHash
	if len(h) > MachineHashLen {
		h = h[:MachineHashLen]
	}
	return cluster + "-" + pool + "-" + h + "-"
}

// MachineName returns the name of the machine with ordinal n of a pool:
// <cluster>-<pool>-<hash5>-<n>. Names are known before a machine exists, so
// a create retried after a crash finds the machine instead of making a twin.
func MachineName(cluster, pool, templateHash string, n int) string {
	return MachinePrefix(cluster, pool, templateHash) + strconv.Itoa(n)
}
