package deps

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/fleetd/fleetd"

// rules lists, per package (a trailing /... covers subpackages), the fleetd
// packages it may import and the third-party import prefixes it may use.
// The standard library is always allowed. Imports flow one way: cmd wires
// everything; reconcile never imports a provider, git or an SDK; providers
// never import each other.
var rules = []struct {
	pkg      string
	fleetd   []string
	external []string
}{
	{"schema", nil, []string{"github.com/santhosh-tekuri/jsonschema/v6", "go.yaml.in/yaml/v3", "golang.org/x/text", "k8s.io/apimachinery/pkg/util/validation"}},
	{"reconcile", []string{"schema"}, []string{"sigs.k8s.io/yaml"}},
	{"reconcile/reconciletest", []string{"schema", "reconcile"}, []string{"sigs.k8s.io/yaml"}},
	{"providers", nil, nil},
	{"providers/providertest", []string{"schema", "reconcile"}, nil},
	{"providers/aws/...", []string{"schema", "reconcile"}, []string{"github.com/aws/aws-sdk-go-v2", "github.com/aws/smithy-go"}},
	{"internal/testenv/ec2test", nil, nil},
	{"internal/testenv/netfault", nil, nil},
	{"internal/testenv/logbuf", nil, nil},
	{"providers/vsphere/...", []string{"schema", "reconcile"}, []string{"github.com/vmware/govmomi"}},
	{"internal/testenv/vcsimserver", []string{"schema"}, []string{"github.com/vmware/govmomi"}},
	{"internal/git", nil, []string{"github.com/go-git/go-git/v5", "github.com/go-git/go-billy/v5", "golang.org/x/crypto"}},
	// The sync loop knows no provider, Rancher or cluster API: it is
	// handed its world, which internal/live builds.
	{"internal/fleetsync", []string{"schema", "reconcile", "internal/git"}, []string{"github.com/go-git/go-git/v5", "go.yaml.in/yaml/v3"}},
	{"internal/live", []string{"schema", "reconcile", "internal/rancher", "internal/kube", "providers/aws", "providers/vsphere"}, nil},
	{"internal/testenv/benchfleet", []string{"schema", "reconcile", "providers/aws", "internal/testenv/ec2test"}, nil},
	{"internal/testenv/benchfleet/genfleet", []string{"internal/testenv/benchfleet"}, nil},
	{"internal/testenv/benchfleet/barelist", nil, []string{"github.com/aws/aws-sdk-go-v2"}},
	{"internal/deps", nil, nil},
	{"internal/daemon", []string{"reconcile", "schema"}, nil},
	{"internal/metrics", []string{"internal/daemon", "reconcile", "schema"}, []string{"github.com/prometheus/client_golang"}},
	{"internal/server", []string{"internal/daemon", "internal/metrics", "reconcile", "schema"}, []string{"github.com/prometheus/client_golang"}},
	{"internal/kubeapi", nil, []string{"k8s.io/api", "k8s.io/apimachinery", "k8s.io/client-go/rest"}},
	{"internal/leader", []string{"internal/kubeapi"}, []string{"k8s.io/client-go/rest", "k8s.io/api", "k8s.io/apimachinery"}},
	{"internal/testenv/kubetest", nil, []string{"k8s.io/apimachinery", "k8s.io/client-go", "sigs.k8s.io/yaml"}},
	{"internal/rancher", []string{"schema", "reconcile", "internal/kubeapi"}, []string{"k8s.io/api", "k8s.io/apimachinery", "k8s.io/client-go"}},
	{"internal/kube", []string{"schema", "reconcile", "internal/rancher", "internal/kubeapi"}, []string{"k8s.io/api", "k8s.io/apimachinery", "k8s.io/client-go"}},
	{"internal/testenv/rancherstandin", []string{"internal/testenv/kubetest"}, []string{"k8s.io/api", "k8s.io/apimachinery", "k8s.io/client-go", "github.com/vmware/govmomi"}},
	{"cmd/...", []string{"..."}, []string{"..."}},
}

// testOnly lists what tests may import beyond their package's rule.
var testOnly = map[string][]string{
	"internal/server":       {"internal/testenv/logbuf"},
	"providers/aws/...":     {"providers/providertest", "providers/aws", "internal/testenv/ec2test", "github.com/sivchari/kumo"},
	"providers/vsphere/...": {"providers/providertest", "internal/testenv/vcsimserver", "github.com/vmware/govmomi", "internal/testenv/logbuf"},
	"reconcile":             {"reconcile/reconciletest"},
	// The EC2 server's tests drive it with the real SDK and provider.
	"internal/testenv/ec2test": {"providers/aws", "github.com/aws/aws-sdk-go-v2", "github.com/aws/smithy-go"},
	"internal/git":             {"golang.org/x/crypto", "internal/testenv/netfault", "internal/testenv/logbuf"},
	"internal/fleetsync":       {"reconcile/reconciletest", "internal/fleetsync", "providers/aws", "internal/testenv/ec2test", "github.com/aws/aws-sdk-go-v2"},
	"internal/leader":          {"internal/testenv/kubetest", "internal/daemon", "internal/testenv/logbuf"},
	"internal/rancher":         {"internal/testenv/kubetest", "internal/testenv/rancherstandin", "internal/testenv/logbuf"},
	"internal/kube":            {"internal/testenv/kubetest", "internal/testenv/rancherstandin", "internal/testenv/vcsimserver", "providers/vsphere", "reconcile/reconciletest", "internal/fleetsync", "internal/git", "github.com/vmware/govmomi"},
}

func ruleFor(pkg string) (fleetd, external []string, ok bool) {
	for _, r := range rules {
		if r.pkg == pkg || (strings.HasSuffix(r.pkg, "/...") && (pkg == strings.TrimSuffix(r.pkg, "/...") || strings.HasPrefix(pkg, strings.TrimSuffix(r.pkg, "...")))) {
			return r.fleetd, r.external, true
		}
	}
	return nil, nil, false
}

func allowed(imp string, fleetd, external []string) bool {
	if rel, ok := strings.CutPrefix(imp, module+"/"); ok {
		for _, f := range fleetd {
			if f == "..." || f == rel {
				return true
			}
		}
		return false
	}
	first, _, _ := strings.Cut(imp, "/")
	if !strings.Contains(first, ".") {
		return true // standard library
	}
	for _, e := range external {
		if e == "..." || imp == e || strings.HasPrefix(imp, e+"/") {
			return true
		}
	}
	return false
}

func TestImportRules(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]map[string]bool{} // pkg -> imports (non-test)
	testImports := map[string]map[string]bool{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "hack") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		pkg := filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		set := imports
		if strings.HasSuffix(p, "_test.go") {
			set = testImports
		}
		if set[pkg] == nil {
			set[pkg] = map[string]bool{}
		}
		for _, is := range f.Imports {
			imp, _ := strconv.Unquote(is.Path.Value)
			set[pkg][imp] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pkgs := make([]string, 0, len(imports))
	for p := range imports {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, pkg := range pkgs {
		fleetd, external, ok := ruleFor(pkg)
		if !ok {
			t.Errorf("package %s has no import rule: add one to rules", pkg)
			continue
		}
		for imp := range imports[pkg] {
			if !allowed(imp, fleetd, external) {
				t.Errorf("%s must not import %s", pkg, imp)
			}
		}
		var extra []string
		for k, v := range testOnly {
			if k == pkg || (strings.HasSuffix(k, "/...") && strings.HasPrefix(pkg+"/", strings.TrimSuffix(k, "..."))) {
				extra = v
			}
		}
		for imp := range testImports[pkg] {
			if imp == module+"/"+pkg || allowed(imp, fleetd, external) {
				continue
			}
			rel := strings.TrimPrefix(imp, module+"/")
			if contains(extra, rel) || contains(extra, imp) || allowed(imp, nil, extra) {
				continue
			}
			t.Errorf("tests of %s must not import %s", pkg, imp)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestRuleMatching(t *testing.T) {
	if _, _, ok := ruleFor("providers/aws/internal"); !ok {
		t.Error("providers/aws/... must cover its subpackages")
	}
	if allowed(module+"/providers/aws", []string{"schema"}, nil) {
		t.Error("a fleetd import outside the list must be refused")
	}
	if !allowed("fmt", nil, nil) {
		t.Error("the standard library is always allowed")
	}
	if allowed("github.com/aws/aws-sdk-go-v2/service/ec2", nil, []string{"github.com/vmware/govmomi"}) {
		t.Error("an external import outside the list must be refused")
	}
}

// forbiddenInFleetd are packages the fleetd binary must not link, directly or
// through any dependency: test helpers, simulators and stand-ins.
var forbiddenInFleetd = []string{
	"testing",
	module + "/internal/testenv/kubetest",
	module + "/internal/testenv/rancherstandin",
	module + "/internal/testenv/vcsimserver",
	module + "/internal/testenv/ec2test",
	module + "/reconcile/reconciletest",
	module + "/providers/providertest",
	"github.com/vmware/govmomi/simulator",
	"github.com/sivchari/kumo",
}

// TestFleetdBinaryDeps lists every package the fleetd binary links (go list
// -deps) and refuses the forbidden ones (tailscale's tstest/deptest).
func TestFleetdBinaryDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("go list -deps takes a few seconds")
	}
	out, err := exec.Command("go", "list", "-deps", module+"/cmd/fleetd").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps listed only %d packages: the check would see nothing", len(deps))
	}
	for _, d := range deps {
		for _, f := range forbiddenInFleetd {
			// "testing" itself, not testing/fstest and testing/iotest,
			// which go-git links for their in-memory helpers.
			if d == f || (f != "testing" && strings.HasPrefix(d, f+"/")) {
				t.Errorf("the fleetd binary links %s", d)
			}
		}
	}
}
