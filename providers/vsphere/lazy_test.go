package vsphere

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
	"github.com/fleetd/fleetd/reconcile"
)

// Building a provider makes no request: an unreachable vCenter fails the
// provider's own calls, never the building of the world.
func TestNewMakesNoRequest(t *testing.T) {
	s := newSim(t, vcsimserver.Options{})
	before := s.srv.Requests()
	cfg := s.config("acme")
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	if n := s.srv.Requests() - before; n != 0 {
		t.Fatalf("New made %d requests, want none", n)
	}
	if _, err := p.List(t.Context()); err != nil {
		t.Fatalf("the first call connects: %v", err)
	}

	cfg.Spec.Server = "https://127.0.0.1:1/sdk" // nothing listens there
	if _, err := New(context.Background(), cfg); err != nil {
		t.Fatalf("New with an unreachable vCenter: %v", err)
	}
}

// A refused login stalls, and is not tried again by the same provider: SSO
// locks an account after a few failed logins. A provider built anew (the
// sync loop builds one when the credentials change) logs in again.
func TestRefusedLoginIsTriedOnce(t *testing.T) {
	s := newSim(t, vcsimserver.Options{Username: "fleetd", Password: "right"})
	cfg := s.config("acme")
	cfg.Username, cfg.Password = "fleetd", "wrong-password-value"
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		_, err := p.List(t.Context())
		var ce *reconcile.CredentialsError
		if !errors.As(err, &ce) || reconcile.Classify(err) != reconcile.ReactStall {
			t.Fatalf("List %d: %v (%v), want a stalled refusal of the credentials", i+1, err, reconcile.Classify(err))
		}
		if !strings.Contains(err.Error(), "vSphere dc1 refused the credentials") || strings.Contains(err.Error(), "wrong-password-value") {
			t.Fatalf("List %d: %q", i+1, err)
		}
	}
	if _, err := p.Create(t.Context(), []reconcile.MachineSpec{spec("prod", "workers", 0)}); err == nil {
		t.Fatal("Create with refused credentials succeeded")
	}
	if n := s.srv.RequestsByMethod()["Login"]; n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
	cfg.Password = "right"
	p2, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p2.Close(context.Background()) })
	if _, err := p2.List(t.Context()); err != nil {
		t.Fatalf("List with the fixed credentials: %v", err)
	}
}
