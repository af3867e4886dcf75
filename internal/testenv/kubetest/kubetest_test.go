package kubetest

import (
	"context"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestStart starts etcd and kube-apiserver, reaches them through Config and
// the kubeconfig file, finds every CRD established, and stops them.
func TestStart(t *testing.T) {
	dir, err := FindAssets()
	if err != nil {
		if Required() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	env, err := Start(ctx, Options{AssetsDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("apiserver ready with CRDs in %v", time.Since(start).Round(time.Millisecond))
	envDir := env.Dir
	defer func() {
		env.Stop()
		if _, err := os.Stat(envDir); !os.IsNotExist(err) {
			t.Errorf("Stop left %s behind", envDir)
		}
	}()

	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("get namespace default: %v", err)
	}
	kc, err := clientcmd.BuildConfigFromFlags("", env.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(kc)
	if err != nil {
		t.Fatal(err)
	}
	crds, err := dyn.Resource(crdGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := CRDs()
	if len(crds.Items) != len(files) {
		t.Errorf("%d CRDs installed, want %d (one per file)", len(crds.Items), len(files))
	}

	// A wrong token is refused: the apiserver authenticates.
	bad := *env.Config
	bad.BearerToken = "wrong"
	badcs, _ := kubernetes.NewForConfig(&bad)
	if _, err := badcs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		t.Error("a wrong token was accepted")
	}
}
