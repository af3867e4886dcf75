package server

import (
	"errors"
	"hash"
	"io"
	"net/http"
	"slices"
	"strconv"

	"github.com/fleetd/fleetd/internal/metrics"
)

// keepBuffer is the largest body buffer a slot keeps between requests. A
// push payload is a few KiB; a larger buffer is dropped after its request,
// so memory taken by a burst of large bodies (forged or not) goes back to
// the garbage collector instead of staying with the slot.
const keepBuffer = 64 << 10

// retryAfter is the Retry-After of a request refused because every slot
// is taken, in seconds.
const retryAfter = 5

// slots bounds the webhook requests whose bodies are read at the same time
// and holds the buffers they read into. A body is read before its HMAC can
// be checked, so an unauthenticated sender can make fleetd hold at most
// len(slots) × MaxBody bytes, however many connections it opens: a request
// that finds no free slot is answered 503 before its body is read.
type slots chan *[]byte

func newSlots(n int) slots {
	s := make(slots, n)
	for range n {
		s <- new([]byte)
	}
	return s
}

// tryAcquire takes a slot without waiting; ok is false when all are taken.
func (s slots) tryAcquire() (buf *[]byte, ok bool) {
	select {
	case b := <-s:
		return b, true
	default:
		return nil, false
	}
}

// release gives a slot back, keeping its buffer only when it is small.
func (s slots) release(buf *[]byte) {
	if cap(*buf) > keepBuffer {
		*buf = nil
	} else {
		*buf = (*buf)[:0]
	}
	s <- buf
}

func overLimit() verdict {
	return verdict{status: http.StatusServiceUnavailable, result: metrics.WebhookOverLimit,
		refused: metrics.RefusedOverLimit, message: "too many webhook requests at once; retry later",
		header: http.Header{"Retry-After": {strconv.Itoa(retryAfter)}}}
}

// body reads the request's body into a slot's buffer, writing every chunk
// into mac as it arrives when mac is not nil (GitHub's HMAC is computed
// while the body streams in, never over a second copy). It returns the body
// and a function that gives the slot back, to be called once the body is
// no longer used; or a verdict when no slot is free or the body cannot be
// read, having given the slot back already.
func (s *Server) body(r *http.Request, mac hash.Hash) ([]byte, func(), *verdict) {
	slot, ok := s.slots.tryAcquire()
	if !ok {
		v := overLimit()
		return nil, nil, &v
	}
	body, err := readInto(r.Body, *slot, r.ContentLength, mac)
	*slot = body
	if err != nil {
		s.slots.release(slot)
		var mbe *http.MaxBytesError
		v := badRequest("cannot read the body")
		if errors.As(err, &mbe) {
			v = tooLarge(s.cfg.MaxBody)
		}
		return nil, nil, &v
	}
	return body, func() { s.slots.release(slot) }, nil
}

// readInto appends what r reads to buf[:0] until EOF. A known length
// (at most MaxBody: the caller refused larger ones) sizes the buffer once;
// an unknown one grows it by doubling, so memory follows the bytes that
// actually arrived. The body is bounded by the http.MaxBytesReader around
// it.
func readInto(r io.Reader, buf []byte, length int64, mac hash.Hash) ([]byte, error) {
	buf = buf[:0]
	if length > 0 && int64(cap(buf)) <= length {
		// One byte more than announced, so that the read which sees EOF
		// has room and the buffer is never grown for it.
		buf = make([]byte, 0, length+1)
	}
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(cap(buf), 4<<10))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		if mac != nil && n > 0 {
			mac.Write(buf[len(buf) : len(buf)+n])
		}
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
