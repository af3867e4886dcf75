//go:build !unix

package reconcile_test

import "time"

func cpuTime() time.Duration { return 0 }
