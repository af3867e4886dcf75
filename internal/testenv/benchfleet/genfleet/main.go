// Command genfleet writes a generated fleet repo for benchmarks:
// genfleet DIR N.
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/fleetd/fleetd/internal/testenv/benchfleet"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: genfleet DIR N")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[2])
	if err == nil {
		err = benchfleet.Write(os.Args[1], n)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "genfleet:", err)
		os.Exit(1)
	}
}
