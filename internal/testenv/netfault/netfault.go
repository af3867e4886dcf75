// Package netfault serves network peers that misbehave, for tests of what
// fleetd does when one does: a peer that accepts connections and never
// answers.
package netfault

import (
	"net"
	"sync"
	"testing"
)

// HangingPeer listens on 127.0.0.1, accepts connections and never answers,
// like a peer behind a stuck proxy or a wedged server. It returns the
// address; the listener and the connections close when the test ends.
func HangingPeer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}
