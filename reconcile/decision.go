package reconcile

import "time"

// Decision is what one sync's result calls for. The sync loop decides it
// once, from the kinds of the sync's failures, and the daemon, the CLI and
// the demo use it as it is: none of them classifies an error again.
type Decision struct {
	// Reaction is the sync's most urgent reaction: retry over fail, fail
	// over stall; requeue when nothing failed and work is in progress; none
	// when nothing failed and nothing is in progress.
	Reaction Reaction
	// Requeue > 0 says work is in progress (machines booting, nodes
	// joining or draining): sync again after this long. It never stands for
	// a failure.
	Requeue time.Duration
	// RetryAfter > 0 says clusters or peers back off after transient
	// failures of their own: the first of them may be called again after
	// this long, and not before (the loop holds them back until then).
	RetryAfter time.Duration
	// Backoff says the sync as a whole failed in a way that may pass (the
	// fetch, the connection to the peers, the status push): the caller
	// backs off, doubling with each consecutive such sync. A failure that
	// concerns one cluster or one peer is its own backoff (RetryAfter).
	Backoff bool
	// Reason is the first failure in one line ("" when nothing failed).
	Reason string
}

// Results of a sync as metrics and logs name them.
const (
	ResultSuccess = "success" // nothing failed (work may be in progress)
	ResultRequeue = "requeue" // waiting for something elsewhere; nothing failed
	ResultRetry   = "retry"   // a transient error: retried with backoff
	ResultStalled = "stalled" // needs a new commit or configuration
	ResultFailed  = "failed"  // an unknown failure: retried at the poll interval
)

// Result names the decision for metrics and logs.
func (d Decision) Result() string {
	switch d.Reaction {
	case ReactNone:
		return ResultSuccess
	case ReactRequeue:
		return ResultRequeue
	case ReactRetry:
		return ResultRetry
	case ReactStall:
		return ResultStalled
	default:
		return ResultFailed
	}
}

// Succeeded reports whether nothing failed: work may be in progress.
func (d Decision) Succeeded() bool {
	return d.Reaction == ReactNone || d.Reaction == ReactRequeue
}

// Exit codes of a one-shot sync (fleetd apply).
const (
	ExitOK     = 0 // nothing failed; work may be in progress
	ExitFailed = 1 // some clusters failed, or fleet.yaml is invalid
)

// ExitCode is the exit code of a one-shot sync that ended with d.
func (d Decision) ExitCode() int {
	if d.Succeeded() {
		return ExitOK
	}
	return ExitFailed
}
