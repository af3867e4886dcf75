package server

import (
	"log/slog"
	"sync"
	"time"
)

// DefaultRefusalLogInterval is how often, at most, refused webhooks are
// logged.
const DefaultRefusalLogInterval = time.Minute

// refusalLog turns refused webhook requests into at most one log line per
// interval. A line per request would let anyone who can reach the port
// fill the log (a flood of forged signatures) and bury the lines that
// matter; the counts per reason are in fleetd_webhook_refused_total
// anyway. The first refusal after a quiet interval is logged at once, so a
// misconfigured secret shows up when the first delivery fails; the ones that
// follow within the interval are summed into one line at its end.
type refusalLog struct {
	log      *slog.Logger
	interval time.Duration

	mu       sync.Mutex
	counts   map[string]int // by "source/reason"
	total    int
	first    time.Time // of the refusals not yet logged
	last     refusal
	lastLine time.Time
	pending  *time.Timer // the summary at the end of the interval; nil when none is due
}

type refusal struct {
	source, reason, message, remote string
}

func newRefusalLog(log *slog.Logger, interval time.Duration) *refusalLog {
	return &refusalLog{log: log, interval: interval, counts: map[string]int{}}
}

// add records one refused request.
func (l *refusalLog) add(r refusal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.total == 0 {
		l.first = now
	}
	l.counts[r.source+"/"+r.reason]++
	l.total++
	l.last = r
	if l.pending != nil {
		return
	}
	if wait := l.lastLine.Add(l.interval).Sub(now); wait > 0 {
		l.pending = time.AfterFunc(wait, l.flush)
		return
	}
	l.flushLocked(now)
}

// flush logs what was refused since the last line, if anything.
func (l *refusalLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending != nil {
		l.pending.Stop()
		l.pending = nil
	}
	l.flushLocked(time.Now())
}

func (l *refusalLog) flushLocked(now time.Time) {
	if l.total == 0 {
		return
	}
	// The message is the sender's reason, never a secret (see verdict).
	l.log.Warn("Refused webhook requests", "count", l.total, "period", now.Sub(l.first).Round(time.Second).String(),
		"by_reason", l.counts, "last_source", l.last.source, "last_reason", l.last.message, "last_remote", l.last.remote)
	l.counts, l.total, l.lastLine = map[string]int{}, 0, now
}
