//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFileName is the lock of a work directory, beside the clone.
const lockFileName = "fleetd.lock"

// lockWorkDir takes an exclusive lock on dir for the life of the process:
// two daemons on one work directory fetch and compact the same clone and
// fail each other's reads ("packfile not found"). The lock is a flock(2) on
// dir/fleetd.lock, so the kernel releases it when the process dies, however
// it dies; a lock file left behind by a killed daemon never blocks the next
// one. The file holds the holder's pid, for the message of the one refused.
// unlock releases it (tests run several daemons in one process).
func lockWorkDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("--work-dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("--work-dir %s: lock: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("--work-dir %s: lock %s: %w", dir, path, err)
		}
		holder := "another fleetd"
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
			holder = fmt.Sprintf("another fleetd (pid %d)", pid)
		}
		return nil, fmt.Errorf("--work-dir %s is in use by %s: two daemons must not share a work directory; give this one its own --work-dir", dir, holder)
	}
	// The pid is information only: the lock is the flock, not the file's
	// content.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
