// Package server is the daemon's HTTP face: push webhooks from GitLab and
// GitHub and an explicit sync request, each authenticated in constant time
// before its body is parsed and answered at once (the sync is queued, never
// run in the handler), plus /healthz, /readyz and /metrics.
//
// Nothing unauthenticated costs more than bounded memory: connections are
// limited and timed out, a token in a header is checked before the body is
// read, and a body that must be read to check its HMAC is read into one of
// a fixed number of slots while it is hashed; a request that finds no free
// slot is answered 503 unread. Refused requests are counted by reason and
// logged as one summary per interval.
package server
