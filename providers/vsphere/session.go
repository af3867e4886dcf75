package vsphere

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// sessionRoundTripper logs in again when vCenter says the session is gone
// (NotAuthenticated: it expired, was terminated, or vCenter restarted) and
// repeats the call once. Repeating is safe for every method, tasks included:
// vCenter refuses an unauthenticated call before it does anything.
type sessionRoundTripper struct {
	inner    soap.RoundTripper
	login    func(ctx context.Context, rt soap.RoundTripper) error
	provider *Provider

	mu         sync.Mutex
	generation uint64 // counts logins; guarded by mu
	logins     atomic.Int64
}

func (s *sessionRoundTripper) gen() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.generation
}

// relogin logs in unless another caller already did since generation seen.
func (s *sessionRoundTripper) relogin(ctx context.Context, seen uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.generation != seen {
		return nil
	}
	s.provider.connMu.Lock()
	refused := s.provider.refused
	s.provider.connMu.Unlock()
	if refused != nil {
		return refused
	}
	if err := s.login(ctx, s.inner); err != nil {
		s.provider.connMu.Lock()
		defer s.provider.connMu.Unlock()
		return s.provider.loginFailed(err)
	}
	s.generation++
	s.logins.Add(1)
	return nil
}

// RoundTrip implements soap.RoundTripper.
func (s *sessionRoundTripper) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	seen := s.gen()
	ctx, status := withStatusCell(ctx)
	err := status.typed(s.inner.RoundTrip(ctx, req, res))
	if err == nil || !isNotAuthenticated(err) || isLogin(req) {
		return err
	}
	if lerr := s.relogin(ctx, seen); lerr != nil {
		return lerr
	}
	// The response holds the fault of the first try; start it afresh.
	v := reflect.ValueOf(res).Elem()
	v.Set(reflect.Zero(v.Type()))
	ctx, status = withStatusCell(ctx)
	return status.typed(s.inner.RoundTrip(ctx, req, res))
}

func isLogin(req soap.HasFault) bool {
	switch req.(type) {
	case *methods.LoginBody, *methods.LogoutBody:
		return true
	}
	return false
}

func isNotAuthenticated(err error) bool {
	return fault.Is(err, &types.NotAuthenticated{})
}

// loginFunc returns the login of user with password through a session
// manager.
func loginFunc(user, password string) func(context.Context, soap.RoundTripper, types.ManagedObjectReference) error {
	return func(ctx context.Context, rt soap.RoundTripper, sm types.ManagedObjectReference) error {
		_, err := methods.Login(ctx, rt, &types.Login{This: sm, UserName: user, Password: password})
		return err
	}
}
