package reconcile

import (
	"fmt"
	"strings"
)

// CredentialsError says a peer (a provider, Rancher, the git remote) refused
// the credentials fleetd sent. It is always stalled: trying again with the
// same credentials changes nothing, and repeated failed logins lock accounts.
// Its message says what to fix and when fleetd tries again.
type CredentialsError struct {
	// Peer names the peer: "vSphere dc1", "AWS aws-eu", "Rancher".
	Peer string
	// Source is where the credentials came from, as fleet.yaml or a flag
	// says: "file:/etc/fleetd/dc1", "env:VSPHERE_DC1"; empty when unknown
	// (the AWS SDK's default chain).
	Source string
	// Err is the peer's refusal.
	Err error
}

func (e *CredentialsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s refused the credentials", e.Peer)
	switch {
	case strings.HasPrefix(e.Source, "file:"):
		fmt.Fprintf(&b, " from %s: fix them; fleetd tries again when the file or the configuration changes", e.Source)
	case strings.HasPrefix(e.Source, "env:"):
		fmt.Fprintf(&b, " from %s: fix them; fleetd tries again when the variable or the configuration changes", e.Source)
	case e.Source != "":
		fmt.Fprintf(&b, " from %s: fix them; fleetd tries again when they change", e.Source)
	default:
		b.WriteString(": fix them; fleetd tries again when the configuration changes")
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	return b.String()
}

func (e *CredentialsError) Unwrap() error { return e.Err }
