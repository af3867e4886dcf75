package server

import (
	"errors"
	"fmt"
	"time"

	"github.com/fleetd/fleetd/internal/daemon"
)

// Readiness is the answer of /readyz: Err, when not nil, says why this
// replica is not ready (503); Notes are shown either way. Readiness means
// healthy and able to serve: a fleet repo that fetches but does not load
// (an invalid fleet.yaml) is a note, never a reason to leave the Service,
// since the webhook of the commit that fixes it must still reach the
// daemon (and GitLab disables a hook that keeps failing).
type Readiness struct {
	Err   error
	Notes []string
}

// ReadyCheck is the readiness rule of /readyz: this replica is not
// stopping and, when it leads (or election is off), its last successful
// fetch of the fleet repo is younger than three poll intervals. A follower
// is ready: it is healthy and able to take over, so a Deployment of several
// replicas is fully available and rolls out one pod at a time; a webhook it
// receives is answered 202 and waits for this replica to lead, and the
// leader's poll (or the same webhook sent to the leader) catches up.
type ReadyCheck struct {
	PollInterval time.Duration
	// Status returns the daemon's state: when the last fetch succeeded,
	// and why the last fetch or load failed.
	Status func() daemon.Status
	// Leading reports whether this replica leads; nil when election is off.
	Leading func() bool
	// Stopping reports whether a graceful stop has begun; may be nil.
	Stopping func() bool
	// Now defaults to time.Now.
	Now func() time.Time
}

// Check returns whether this replica is ready, why not, and what else is
// worth knowing.
func (c ReadyCheck) Check() Readiness {
	st := c.Status()
	var r Readiness
	if st.LoadError != "" {
		r.Notes = append(r.Notes, fmt.Sprintf("revision %s does not load, nothing changes until a commit fixes it: %s", short(st.Revision), st.LoadError))
	}
	if st.LastFetchError != "" {
		r.Notes = append(r.Notes, "the last fetch of the fleet repo failed: "+st.LastFetchError)
	}
	switch {
	case c.Stopping != nil && c.Stopping():
		r.Err = errors.New("stopping")
	case c.Leading != nil && !c.Leading():
		// A follower neither fetches nor syncs: nothing to be stale about.
		r.Notes = append(r.Notes, "this replica follows: the leader syncs, and this one takes over when the Lease is free")
	case st.LastFetchedAt.IsZero() && st.LastFetchError != "":
		r.Err = errors.New("no successful fetch of the fleet repo yet: the last one failed")
	case st.LastFetchedAt.IsZero():
		r.Err = errors.New("no fetch of the fleet repo yet")
	default:
		now := time.Now
		if c.Now != nil {
			now = c.Now
		}
		if age, limit := now().Sub(st.LastFetchedAt), 3*c.PollInterval; age > limit {
			why := "no sync has fetched since"
			if st.LastFetchError != "" {
				why = "fetches fail"
			}
			r.Err = fmt.Errorf("last successful fetch of the fleet repo %s ago, more than 3 poll intervals (%s): %s", age.Round(time.Second), limit, why)
		}
	}
	return r
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	if rev == "" {
		return "(unknown)"
	}
	return rev
}
