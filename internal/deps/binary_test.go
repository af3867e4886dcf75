package deps

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// forbiddenInBinary are packages the fleetd binary must never link, however
// indirectly: test helpers, simulators and stand-ins. An entry names a
// package and its subpackages; one ending in "/" only the subpackages; one
// starting with "=" that package alone.
var forbiddenInBinary = []string{
	"testing",
	"testing/",
	// Test infrastructure lives here, all of it: the apiserver harness,
	// the Rancher stand-in, the vCenter simulator's server, the EC2
	// protocol server and the benchmark fleets.
	module + "/internal/testenv",
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
	// client-go's leader election links the informers of every API group
	// (its lease-candidate code), and with them the clientset, the listers
	// and the apply configurations: about 300 packages. The generated typed
	// clients link k8s.io/client-go/kubernetes/scheme (every API group) and
	// the apply configurations with kube-openapi: internal/kubeapi serves
	// the few resources fleetd uses instead.
	"k8s.io/client-go/tools/leaderelection",
	"k8s.io/client-go/informers",
	"=k8s.io/client-go/kubernetes", // the clientset itself
	"k8s.io/client-go/kubernetes/typed/",
	"k8s.io/client-go/kubernetes/scheme",
	"k8s.io/client-go/listers/",
	"k8s.io/client-go/applyconfigurations/",
	"k8s.io/client-go/discovery",
	"k8s.io/kube-openapi/pkg/validation/",
	"k8s.io/kube-openapi/pkg/handler3",
	"github.com/google/gnostic-models",
	"github.com/emicklei/go-restful/",
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
			if exact, ok := strings.CutPrefix(bad, "="); ok {
				if pkg == exact {
					t.Errorf("the fleetd binary links %s", pkg)
				}
				continue
			}
			if pkg == bad || strings.HasSuffix(bad, "/") && strings.HasPrefix(pkg, bad) || strings.HasPrefix(pkg, bad+"/") {
				t.Errorf("the fleetd binary links %s", pkg)
			}
		}
	}
}

// TestBinaryKeepsDeadCodeElimination links the fleetd binary and fails when
// anything reachable calls reflect.Value.Method or MethodByName with a name
// not known at link time (the linker marks it <ReflectMethod>): the linker
// then keeps every exported method of every reachable type, all 800
// operations of the EC2 client among them (the binary went from 48 MB to
// 101 MB with cobra's SetVersionTemplate, which links text/template's
// execution).
func TestBinaryKeepsDeadCodeElimination(t *testing.T) {
	if testing.Short() {
		t.Skip("links the binary")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	cmd := exec.Command(gobin, "build", "-ldflags=-dumpdep", "-o", os.DevNull, module+"/cmd/fleetd")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "<ReflectMethod>") {
			t.Errorf("dead-code elimination of methods is off: %s", strings.TrimSpace(line))
		}
	}
}
