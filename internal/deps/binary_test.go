package deps

import (
	"os/exec"
	"strings"
	"testing"
)

// forbiddenInBinary are packages the fleetd binary must never link, however
// indirectly: test helpers, simulators and stand-ins.
var forbiddenInBinary = []string{
	"testing",
	"testing/",
	module + "/providers/aws/ec2test",
	module + "/internal/vcsimserver",
	module + "/internal/benchfleet",
	module + "/reconcile/reconciletest",
	module + "/providers/providertest",
	"github.com/vmware/govmomi/simulator",
	"github.com/sivchari/kumo",
	// Heavy libraries: kubectl's drain pulls in cli-runtime and kustomize,
	// and Go's plugin package turns off the linker's dead-code removal
	// (the binary went from 31 MB to 181 MB with them).
	"plugin",
	"k8s.io/kubectl/",
	"k8s.io/cli-runtime/",
	"sigs.k8s.io/kustomize/",
}

// TestBinaryImports lists every package the fleetd binary links (go list
// -deps, so transitive imports count) and fails on a forbidden one.
func TestBinaryImports(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps", module+"/cmd/fleetd").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, bad := range forbiddenInBinary {
			if pkg == bad || strings.HasSuffix(bad, "/") && strings.HasPrefix(pkg, bad) || strings.HasPrefix(pkg, bad+"/") {
				t.Errorf("the fleetd binary links %s", pkg)
			}
		}
	}
}
