package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
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
