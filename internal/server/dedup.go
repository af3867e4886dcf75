package server

import (
	"container/list"
	"sync"
	"time"
)

// deliveries remembers GitHub delivery IDs for a while, in bounded memory:
// at most max IDs, each for ttl. When full, the oldest is forgotten first,
// so a flood of fake IDs can cost memory only up to the bound (and only
// requests with a valid signature are ever recorded).
type deliveries struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	seen  map[string]*list.Element
	order *list.List // of delivery, oldest first
}

type delivery struct {
	id string
	at time.Time
}

func newDeliveries(ttl time.Duration, max int) *deliveries {
	return &deliveries{ttl: ttl, max: max, seen: map[string]*list.Element{}, order: list.New()}
}

// Add records id as seen at now and reports whether it was new, that is not
// recorded within ttl before now. Checking and recording are one step, so two
// concurrent deliveries of one ID cannot both be new.
func (d *deliveries) Add(id string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(now)
	if _, ok := d.seen[id]; ok {
		return false
	}
	for d.order.Len() >= d.max {
		d.evict(d.order.Front())
	}
	d.seen[id] = d.order.PushBack(delivery{id: id, at: now})
	return true
}

// Forget removes id, for a delivery that was not handled (the sender will
// deliver it again).
func (d *deliveries) Forget(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.seen[id]; ok {
		d.evict(e)
	}
}

// Len returns how many IDs are remembered.
func (d *deliveries) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.order.Len()
}

func (d *deliveries) expire(now time.Time) {
	for e := d.order.Front(); e != nil && now.Sub(e.Value.(delivery).at) >= d.ttl; e = d.order.Front() {
		d.evict(e)
	}
}

func (d *deliveries) evict(e *list.Element) {
	delete(d.seen, e.Value.(delivery).id)
	d.order.Remove(e)
}
