package server

import (
	"errors"
	"fmt"
	"time"
)

// ReadyCheck is the readiness rule of /readyz: this replica leads (or
// election is off), is not stopping, and its last successful fetch and load
// of the fleet repo is younger than three poll intervals. A replica that
// does not lead is not ready, so a Service sends webhooks to the leader.
type ReadyCheck struct {
	PollInterval time.Duration
	// LastFetch returns when the last fetch and load succeeded (zero: never).
	LastFetch func() time.Time
	// Leading reports whether this replica leads; nil when election is off.
	Leading func() bool
	// Stopping reports whether a graceful stop has begun; may be nil.
	Stopping func() bool
	// Now defaults to time.Now.
	Now func() time.Time
}

// Check returns nil when ready, else why not.
func (c ReadyCheck) Check() error {
	if c.Stopping != nil && c.Stopping() {
		return errors.New("stopping")
	}
	if c.Leading != nil && !c.Leading() {
		return errors.New("not the leader")
	}
	last := c.LastFetch()
	if last.IsZero() {
		return errors.New("no successful fetch of the fleet repo yet")
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	if age, limit := now().Sub(last), 3*c.PollInterval; age > limit {
		return fmt.Errorf("last successful fetch %s ago, more than 3 poll intervals (%s)", age.Round(time.Second), limit)
	}
	return nil
}
