// Package deploy holds fleetd's container image build and Kubernetes
// manifests; its test applies the manifests to a real kube-apiserver with a
// server-side dry run.
package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/fleetd/fleetd/internal/testenv/kubetest"
)

var shared *kubetest.Shared

func TestMain(m *testing.M) { kubetest.Main(m, &shared, nil) }

// manifests reads the files kustomization.yaml lists, as objects.
func manifests(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	var k struct {
		Resources []string `json:"resources"`
	}
	b, err := os.ReadFile("kubernetes/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("kubernetes/*.yaml")
	for _, f := range files {
		if base := filepath.Base(f); base != "kustomization.yaml" && !slices.Contains(k.Resources, base) {
			t.Errorf("%s is not listed in kustomization.yaml", f)
		}
	}
	var objs []*unstructured.Unstructured
	for _, f := range k.Resources {
		b, err := os.ReadFile(filepath.Join("kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(b), "\n---") {
			var m map[string]any
			if err := yaml.UnmarshalStrict([]byte(doc), &m); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if m != nil {
				objs = append(objs, &unstructured.Unstructured{Object: m})
			}
		}
	}
	return objs
}

func TestManifestsShape(t *testing.T) {
	kinds := map[string]*unstructured.Unstructured{}
	for _, o := range manifests(t) {
		kinds[o.GetKind()] = o
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "Role", "RoleBinding", "Deployment", "Service", "ServiceMonitor"} {
		if kinds[k] == nil {
			t.Errorf("no %s", k)
		}
	}
	d := kinds["Deployment"]
	if d == nil {
		return
	}
	if n, _, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "replicas"); fmt.Sprint(n) != "2" {
		t.Errorf("replicas %v, want 2", n)
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	c := cs[0].(map[string]any)
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	if len(args) == 0 || args[0] != "run" || !slices.Contains(args, "--leader-elect") {
		t.Errorf("args %v, want run --leader-elect", args)
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if p, _, _ := unstructured.NestedString(c, probe, "httpGet", "path"); p != path {
			t.Errorf("%s on %q, want %s", probe, p, path)
		}
	}
	if _, ok, _ := unstructured.NestedMap(c, "resources", "requests"); !ok {
		t.Error("no resource requests")
	}
	if nonRoot, _, _ := unstructured.NestedBool(d.Object, "spec", "template", "spec", "securityContext", "runAsNonRoot"); !nonRoot {
		t.Error("not runAsNonRoot")
	}
}

// TestManifestsDryRun applies every manifest to the test kube-apiserver
// with a server-side apply in dry-run mode: the apiserver validates each
// object against its schema (and the ServiceMonitor against a minimal
// stand-in CRD, testdata/servicemonitor-crd.yaml) and stores nothing. Only
// the Namespace is then created for real, because the dry run of a
// namespaced object needs its namespace to exist.
func TestManifestsDryRun(t *testing.T) {
	shared.Need(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := shared.Env.Config
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	installCRD(ctx, t, dyn)
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))

	objs := manifests(t)
	apply := func(o *unstructured.Unstructured, dryRun bool) error {
		gvk := o.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s: %w", gvk, err)
		}
		body, err := o.MarshalJSON()
		if err != nil {
			return err
		}
		opts := metav1.PatchOptions{FieldManager: "fleetd-deploy-test", Force: ptr(true)}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == "namespace" {
			ri = dyn.Resource(mapping.Resource).Namespace(o.GetNamespace())
		}
		_, err = ri.Patch(ctx, o.GetName(), "application/apply-patch+yaml", body, opts)
		return err
	}
	for _, o := range objs {
		if o.GetKind() != "Namespace" {
			continue
		}
		if err := apply(o, true); err != nil {
			t.Fatalf("dry run of Namespace %s: %v", o.GetName(), err)
		}
		if err := apply(o, false); err != nil {
			t.Fatalf("create Namespace %s: %v", o.GetName(), err)
		}
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			continue
		}
		if err := apply(o, true); err != nil {
			t.Errorf("dry run of %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	// The dry run stored nothing.
	dep := schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	if _, err := dyn.Resource(dep).Namespace("fleetd").Get(ctx, "fleetd", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the dry run created the Deployment: %v", err)
	}

	// The dry run is a real check: a broken Deployment is refused.
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		bad := o.DeepCopy()
		_ = unstructured.SetNestedField(bad.Object, "two", "spec", "replicas")
		if err := apply(bad, true); err == nil {
			t.Error("a Deployment with replicas \"two\" passed the dry run")
		}
	}
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func installCRD(ctx context.Context, t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	b, err := os.ReadFile("testdata/servicemonitor-crd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	if _, err := dyn.Resource(crdGVR).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := dyn.Resource(crdGVR).Get(ctx, u.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			c := c.(map[string]any)
			if c["type"] == "Established" && c["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("ServiceMonitor CRD not established: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

// TestExampleFleetRunsAsDeployed: every file the example fleet.yaml names
// (file: secrets, CA files) is under a directory the Deployment mounts, so
// the example deployed as shipped reads its credentials; and every image
// reference of the manifests, the example CI template and the team guide
// is the same one.
func TestExampleFleetRunsAsDeployed(t *testing.T) {
	var d *unstructured.Unstructured
	for _, o := range manifests(t) {
		if o.GetKind() == "Deployment" {
			d = o
		}
	}
	if d == nil {
		t.Fatal("no Deployment")
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	c := cs[0].(map[string]any)
	mounts, _, _ := unstructured.NestedSlice(c, "volumeMounts")
	var dirs []string
	for _, m := range mounts {
		dirs = append(dirs, m.(map[string]any)["mountPath"].(string))
	}
	fleet, err := os.ReadFile("../examples/fleet-repo/fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	paths := regexp.MustCompile(`(?m)(?:file:|caFile:\s*)(/[^\s"']+)`).FindAllStringSubmatch(string(fleet), -1)
	if len(paths) == 0 {
		t.Fatal("the example fleet names no file")
	}
	for _, p := range paths {
		if !slices.ContainsFunc(dirs, func(dir string) bool { return strings.HasPrefix(p[1], strings.TrimSuffix(dir, "/")+"/") }) {
			t.Errorf("the example fleet reads %s, which the Deployment does not mount (mounts: %v)", p[1], dirs)
		}
	}

	image, _, _ := unstructured.NestedString(c, "image")
	if strings.HasSuffix(image, ":latest") || !strings.Contains(image, ":v") {
		t.Errorf("the Deployment runs %s: name a release tag", image)
	}
	ref := regexp.MustCompile(`[a-z0-9.-]+/[a-z0-9./-]*fleetd:[A-Za-z0-9._-]+`)
	for _, f := range []string{"../examples/fleet-repo/.gitlab-ci.yml", "../examples/fleet-repo/README.md", "README.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range ref.FindAllString(string(b), -1) {
			if got != image {
				t.Errorf("%s names the image %s, the Deployment %s", f, got, image)
			}
		}
		if strings.Contains(string(b), image+" fleetd ") {
			t.Errorf("%s runs `%s fleetd ...`: the image's entrypoint is fleetd already", f, image)
		}
	}
}
