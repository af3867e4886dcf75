package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

// Shared is the apiserver a test package shares among its tests: started
// once in TestMain with StartShared, stopped after the tests.
type Shared struct {
	Env *Env
	// SkipReason is set when the binaries are not there and the setup does
	// not require them (plain `go test`): tests skip with it.
	SkipReason string
}

// StartShared starts the package's apiserver from FLEETD_KUBE_ASSETS. When
// the variable is unset (and FLEETD_KUBE_REQUIRE is not 1) it returns a
// Shared with SkipReason set; any other failure is an error, so TestMain can
// exit loudly.
func StartShared(ctx context.Context) (*Shared, error) {
	dir, err := FindAssets()
	if errors.Is(err, ErrNoAssets) {
		return &Shared{SkipReason: err.Error()}, nil
	}
	if err != nil {
		return nil, err
	}
	start := time.Now()
	env, err := Start(ctx, Options{AssetsDir: dir})
	if err != nil {
		return nil, err
	}
	if os.Getenv("FLEETD_KUBE_VERBOSE") != "" {
		fmt.Fprintf(os.Stderr, "kubetest: apiserver ready at %s in %v\n", env.URL, time.Since(start).Round(time.Millisecond))
	}
	return &Shared{Env: env}, nil
}

// Stop stops the apiserver, if one runs.
func (s *Shared) Stop() {
	if s != nil && s.Env != nil {
		s.Env.Stop()
	}
}

// Main is a test package's TestMain for tests that share one apiserver:
// it starts the apiserver into *shared (StartShared), then setup on it when
// there is one (the Rancher stand-in, say; setup may be nil), runs the
// tests, stops what it started and exits with the tests' code. A failure to
// start anything exits 1 and says why.
func Main(m *testing.M, shared **Shared, setup func(env *Env) (stop func(), err error)) {
	s, err := StartShared(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*shared = s
	stop := func() {}
	if s.Env != nil && setup != nil {
		if stop, err = setup(s.Env); err != nil {
			s.Stop()
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	stop()
	s.Stop()
	os.Exit(code)
}

// Need returns the shared apiserver, or skips t with why there is none
// (plain `go test` without the binaries).
func (s *Shared) Need(t testing.TB) *Env {
	t.Helper()
	if s.Env == nil {
		t.Skip(s.SkipReason)
	}
	return s.Env
}
