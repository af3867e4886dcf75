package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// AssetsEnv names the environment variable holding the directory with the
// kube-apiserver and etcd binaries; `make test` sets it.
const AssetsEnv = "FLEETD_KUBE_ASSETS"

// RequireEnv, set to 1 (as `make test` does), makes a missing setup an
// error instead of a reason to skip.
const RequireEnv = "FLEETD_KUBE_REQUIRE"

// Required reports whether FLEETD_KUBE_REQUIRE=1: tests must run, not skip.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// ErrNoAssets says the binaries are not there; FindAssets wraps it.
var ErrNoAssets = errors.New("kubetest: no kube-apiserver and etcd binaries")

// FindAssets returns the directory named by FLEETD_KUBE_ASSETS when it holds
// both binaries. It returns an error wrapping ErrNoAssets when the variable is
// unset, and a plain error when it is set but the binaries are missing (a
// broken setup, never a reason to skip).
func FindAssets() (string, error) {
	dir := os.Getenv(AssetsEnv)
	if dir == "" && os.Getenv(RequireEnv) == "1" {
		return "", fmt.Errorf("kubetest: %s=1 and %s is not set: run the tests with `make test`", RequireEnv, AssetsEnv)
	}
	if dir == "" {
		return "", fmt.Errorf("%w: %s is not set (run `make kube-tools` or `make test`, or set it to the directory hack/kube-tools/build.sh prints)", ErrNoAssets, AssetsEnv)
	}
	if err := checkAssets(dir); err != nil {
		return "", fmt.Errorf("kubetest: %s=%s: %w", AssetsEnv, dir, err)
	}
	return dir, nil
}

func checkAssets(dir string) error {
	for _, name := range []string{"kube-apiserver", "etcd"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not executable", filepath.Join(dir, name))
		}
	}
	return nil
}

// EnsureAssets returns the assets directory: FLEETD_KUBE_ASSETS when set,
// else the cache that hack/kube-tools/build.sh under repoRoot fills, building
// the binaries there when they are missing (minutes, once per version). The
// script's progress goes to progress.
func EnsureAssets(ctx context.Context, repoRoot string, progress io.Writer) (string, error) {
	if os.Getenv(AssetsEnv) != "" {
		return FindAssets()
	}
	script := filepath.Join(repoRoot, "hack", "kube-tools", "build.sh")
	if _, err := os.Stat(script); err != nil {
		return "", fmt.Errorf("kubetest: build script: %w", err)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stdout = &out
	cmd.Stderr = progress
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("kubetest: %s: %w", script, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	dir := lines[len(lines)-1]
	if err := checkAssets(dir); err != nil {
		return "", fmt.Errorf("kubetest: %s printed %q: %w", script, dir, err)
	}
	return dir, nil
}
