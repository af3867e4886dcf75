package rancher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/fleetd/fleetd/internal/testenv/rancherstandin"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

func admin(t *testing.T) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(shared.Env.Config)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestNewResolvesTokenAndCA builds the registry the way fleetd apply does,
// from fleet.yaml's rancher block with a token file and a CA file, and
// observes through Rancher's URL layout.
func TestNewResolvesTokenAndCA(t *testing.T) {
	rs := needRancher(t)
	dir := t.TempDir()
	tokenFile, caFile := filepath.Join(dir, "token"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(tokenFile, []byte(rs.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, rs.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := New(context.Background(), Config{Fleet: "acme", Spec: schema.Rancher{URL: rs.URL, Token: "file:" + tokenFile, AuthProvider: "openldap", CAFile: caFile}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Clusters(context.Background()); err != nil {
		t.Fatalf("Clusters through %s: %v", rs.URL, err)
	}

	t.Setenv("FLEETD_TEST_RANCHER_TOKEN", "not-the-token")
	bad, err := New(context.Background(), Config{Fleet: "acme", Spec: schema.Rancher{URL: rs.URL, Token: "env:FLEETD_TEST_RANCHER_TOKEN", AuthProvider: "openldap", CAFile: caFile}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Clusters(context.Background())
	if reconcile.Classify(err) != reconcile.ReactStall || !strings.Contains(err.Error(), "rancher.token") {
		t.Fatalf("a refused token: got %v (reaction %v), want a stalled error about rancher.token", err, reconcile.Classify(err))
	}
	if strings.Contains(err.Error(), "not-the-token") {
		t.Fatalf("the error holds the token: %v", err)
	}
}

// TestRegisterObserveUnregister registers a cluster, sees Rancher assign its
// ID, registers it again without a change, updates its version, leaves a
// foreign cluster of the same name alone, and unregisters it.
func TestRegisterObserveUnregister(t *testing.T) {
	r := newRegistry(t, "", nil)
	ctx := context.Background()
	spec := reconcile.RegisterSpec{Name: "reg-a", Team: "payments", KubernetesVersion: "v1.31.4+rke2r1", Protected: true, Labels: map[string]string{"env": "prod"}}
	if _, err := r.Register(ctx, spec); err != nil {
		t.Fatal(err)
	}
	c := waitCluster(t, r, "reg-a", hasID)
	if !strings.HasPrefix(c.ID, "c-m-") || c.Team != "payments" || !c.Protected || c.KubernetesVersion != spec.KubernetesVersion || c.Deleting {
		t.Fatalf("observed %+v", c)
	}
	ri := admin(t).Resource(ProvisioningClusterGVR).Namespace("fleet-default")
	before, err := ri.Get(ctx, "reg-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(ctx, spec); err != nil {
		t.Fatal(err)
	}
	again, _ := ri.Get(ctx, "reg-a", metav1.GetOptions{})
	if again.GetGeneration() != before.GetGeneration() {
		t.Errorf("an unchanged Register changed the spec (generation %d → %d)", before.GetGeneration(), again.GetGeneration())
	}

	spec.KubernetesVersion, spec.Protected, spec.Labels = "v1.32.1+rke2r1", false, map[string]string{"tier": "gold"}
	if _, err := r.Register(ctx, spec); err != nil {
		t.Fatal(err)
	}
	c = waitCluster(t, r, "reg-a", func(c reconcile.RancherCluster) bool { return c.KubernetesVersion == "v1.32.1+rke2r1" })
	if c.Protected {
		t.Error("the protected mark stayed after it was removed")
	}
	got, _ := ri.Get(ctx, "reg-a", metav1.GetOptions{})
	if l := got.GetLabels(); l["env"] != "" || l["tier"] != "gold" {
		t.Errorf("labels after update: %v", l)
	}

	// A cluster of the same name that is not the fleet's.
	foreign := clusterObject("other-fleet", "fleet-default", reconcile.RegisterSpec{Name: "reg-foreign", Team: "x", KubernetesVersion: "v1.31.4+rke2r1"})
	if _, err := ri.Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = r.Register(ctx, reconcile.RegisterSpec{Name: "reg-foreign", Team: "x", KubernetesVersion: "v1.32.1+rke2r1"})
	if reconcile.Classify(err) != reconcile.ReactStall {
		t.Errorf("Register over a foreign cluster: %v, want stalled", err)
	}
	if err := r.Unregister(ctx, "reg-foreign"); reconcile.Classify(err) != reconcile.ReactStall {
		t.Errorf("Unregister of a foreign cluster: %v, want stalled", err)
	}
	cs, _ := r.Clusters(ctx)
	for _, c := range cs {
		if c.Name == "reg-foreign" {
			t.Error("Clusters lists a cluster of another fleet")
		}
	}

	if err := r.Unregister(ctx, "reg-a"); err != nil {
		t.Fatal(err)
	}
	if err := r.Unregister(ctx, "reg-a"); err != nil {
		t.Fatalf("Unregister twice: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := ri.Get(ctx, "reg-a", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the provisioning cluster was never deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := r.Unregister(ctx, "reg-a"); err != nil {
		t.Fatalf("Unregister of a gone cluster: %v", err)
	}
}

// TestSchemasKeepWhatFleetdWrites writes each object fleetd makes and reads
// it back: Rancher's CRD schemas prune unknown fields silently, so equality
// proves every field is one Rancher knows. A misspelled field must fail the
// same comparison (the test can fail).
func TestSchemasKeepWhatFleetdWrites(t *testing.T) {
	needRancher(t)
	ctx := context.Background()
	d := admin(t)
	if _, err := d.Resource(schemaNS).Get(ctx, "schema-check", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "schema-check"}}}
		if _, err := d.Resource(schemaNS).Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		obj  *unstructured.Unstructured
		ri   dynamic.ResourceInterface
	}{
		{"provisioning cluster", clusterObject("acme", "schema-check", reconcile.RegisterSpec{Name: "schema-a", Team: "payments", KubernetesVersion: "v1.31.4+rke2r1", Protected: true, Labels: map[string]string{"env": "prod"}}),
			d.Resource(ProvisioningClusterGVR).Namespace("schema-check")},
		{"cluster role template binding", bindingObject("acme", "schema-a", "schema-check", reconcile.Binding{PrincipalID: "openldap_group://cn=payments,ou=groups,dc=acme,dc=example", Role: "cluster-member"}),
			d.Resource(CRTBGVR).Namespace("schema-check")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := roundTrip(t, tc.ri, tc.obj); diff != "" {
				t.Errorf("the apiserver changed what fleetd wrote: %s", diff)
			}
			// The control: a misspelled field is pruned, and the comparison sees it.
			bad := tc.obj.DeepCopy()
			bad.SetName(bad.GetName() + "-typo")
			if _, ok := bad.Object["spec"]; ok {
				_ = unstructured.SetNestedField(bad.Object, "v1.31.4+rke2r1", "spec", "kubernetesVersoin")
			} else {
				bad.Object["roleTemplateNmae"] = "cluster-member"
			}
			if diff := roundTrip(t, tc.ri, bad); diff == "" {
				t.Error("a misspelled field survived the round trip: the check cannot fail")
			}
		})
	}
}

var schemaNS = ProvisioningClusterGVR.GroupResource().WithVersion("v1")

func init() {
	schemaNS.Group, schemaNS.Resource = "", "namespaces"
}

// roundTrip creates obj and returns how the stored object differs from it in
// everything but server-set metadata ("" when equal).
func roundTrip(t *testing.T, ri dynamic.ResourceInterface, obj *unstructured.Unstructured) string {
	t.Helper()
	ctx := context.Background()
	got, err := ri.Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create %s: %v", obj.GetName(), err)
	}
	t.Cleanup(func() { _ = ri.Delete(context.Background(), obj.GetName(), metav1.DeleteOptions{}) })
	want := obj.DeepCopy().Object
	have := got.DeepCopy().Object
	for _, o := range []map[string]any{want, have} {
		md, _ := o["metadata"].(map[string]any)
		for _, k := range []string{"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"} {
			delete(md, k)
		}
		delete(o, "status")
	}
	if reflect.DeepEqual(want, have) {
		return ""
	}
	return fmt.Sprintf("wrote %v, read %v", want, have)
}

// TestJoinCommand builds the node command for each role set from both token
// forms: Rancher's command without sudo, the token filled in, the role flags
// in Rancher's order.
func TestJoinCommand(t *testing.T) {
	rs := needRancher(t)
	r := newRegistry(t, "", nil)
	ctx := context.Background()
	forms := []struct {
		name string
		form rancherstandin.TokenForm
	}{{"inline token (before v2.15)", rancherstandin.TokenInline}, {"token secret (v2.15)", rancherstandin.TokenSecret}}
	roleSets := []struct {
		roles []string
		flags string
	}{
		{[]string{"etcd", "controlplane", "worker"}, "--etcd --controlplane --worker"},
		{[]string{"etcd", "controlplane"}, "--etcd --controlplane"},
		{[]string{"controlplane", "etcd"}, "--etcd --controlplane"},
		{[]string{"etcd"}, "--etcd"},
		{[]string{"controlplane"}, "--controlplane"},
		{[]string{"worker"}, "--worker"},
	}
	defer rs.SetTokenForm(rancherstandin.TokenSecret)
	for i, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			rs.SetTokenForm(f.form)
			name := fmt.Sprintf("join-%d", i)
			if _, err := r.Register(ctx, reconcile.RegisterSpec{Name: name, Team: "t", KubernetesVersion: "v1.31.4+rke2r1"}); err != nil {
				t.Fatal(err)
			}
			c := waitCluster(t, r, name, hasID)
			var cmd string
			deadline := time.Now().Add(10 * time.Second)
			for {
				var err error
				cmd, err = r.JoinCommand(ctx, name, []string{"worker"})
				if err == nil {
					break
				}
				var wait *reconcile.WaitError
				if !errors.As(err, &wait) || time.Now().After(deadline) {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			token := rs.RegistrationToken(c.ID)
			if token == "" || strings.Contains(cmd, "{token}") {
				t.Fatalf("token not filled in: %q", cmd)
			}
			for _, rset := range roleSets {
				got, err := r.JoinCommand(ctx, name, rset.roles)
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("curl -fL %s/system-agent-install.sh | sh -s - --server %s --label 'cattle.io/os=linux' --token %s --ca-checksum %s %s",
					rs.URL, rs.URL, token, rs.Proxy.CAChecksum, rset.flags)
				if got != want {
					t.Errorf("roles %v:\n got %s\nwant %s", rset.roles, got, want)
				}
			}
			if _, err := r.JoinCommand(ctx, name, nil); reconcile.Classify(err) != reconcile.ReactStall {
				t.Errorf("no roles: %v, want stalled", err)
			}
		})
	}

	t.Run("waits for the ID", func(t *testing.T) {
		// Nothing plays Rancher in this namespace: no ID is ever assigned.
		un := newRegistry(t, "fleet-unwatched", nil)
		ensureNamespace(t, "fleet-unwatched")
		if _, err := un.Register(ctx, reconcile.RegisterSpec{Name: "join-wait", Team: "t", KubernetesVersion: "v1.31.4+rke2r1"}); err != nil {
			t.Fatal(err)
		}
		_, err := un.JoinCommand(ctx, "join-wait", []string{"worker"})
		var wait *reconcile.WaitError
		if !errors.As(err, &wait) {
			t.Fatalf("got %v, want a *WaitError", err)
		}
		if err := un.Bind(ctx, "join-wait", reconcile.Binding{PrincipalID: "openldap_group://cn=x", Role: "cluster-member"}); !errors.As(err, &wait) {
			t.Fatalf("Bind without an ID: %v, want a *WaitError", err)
		}
	})
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}}
	if _, err := admin(t).Resource(schemaNS).Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// TestBindings creates bindings, changes one (delete + create), and leaves a
// binding fleetd did not make alone, reporting it as drift.
func TestBindings(t *testing.T) {
	logs := &logbuf.Buffer{}
	r := newRegistry(t, "", logs)
	ctx := context.Background()
	if _, err := r.Register(ctx, reconcile.RegisterSpec{Name: "bind-a", Team: "payments", KubernetesVersion: "v1.31.4+rke2r1"}); err != nil {
		t.Fatal(err)
	}
	c := waitCluster(t, r, "bind-a", hasID)
	dev := reconcile.Binding{PrincipalID: "openldap_group://cn=payments,ou=groups,dc=acme,dc=example", Role: "cluster-member"}
	ops := reconcile.Binding{PrincipalID: "openldap_group://cn=ops,ou=groups,dc=acme,dc=example", Role: "cluster-owner"}
	for _, b := range []reconcile.Binding{dev, ops, dev} {
		if err := r.Bind(ctx, "bind-a", b); err != nil {
			t.Fatal(err)
		}
	}
	ri := admin(t).Resource(CRTBGVR).Namespace(c.ID)
	l, err := ri.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 2 {
		t.Fatalf("%d bindings after binding two (one twice), want 2", len(l.Items))
	}
	for _, u := range l.Items {
		if cn, _, _ := unstructured.NestedString(u.Object, "clusterName"); cn != c.ID || u.GetLabels()[LabelFleet] != "acme" {
			t.Errorf("binding %s: clusterName %q, labels %v", u.GetName(), cn, u.GetLabels())
		}
	}

	// A binding someone made in Rancher's UI: same group and role as one of fleetd's.
	foreign := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "management.cattle.io/v3", "kind": "ClusterRoleTemplateBinding",
		"metadata":    map[string]any{"generateName": "crtb-", "namespace": c.ID},
		"clusterName": c.ID, "roleTemplateName": "cluster-owner", "groupPrincipalName": ops.PrincipalID,
	}}
	fu, err := ri.Create(ctx, foreign, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Change ops from cluster-owner to projects-view: delete + create.
	if err := r.Unbind(ctx, "bind-a", ops); err != nil {
		t.Fatal(err)
	}
	opsView := reconcile.Binding{PrincipalID: ops.PrincipalID, Role: "projects-view"}
	if err := r.Bind(ctx, "bind-a", opsView); err != nil {
		t.Fatal(err)
	}
	if err := r.Unbind(ctx, "bind-a", ops); err != nil {
		t.Fatalf("Unbind of a gone binding: %v", err)
	}
	c = waitCluster(t, r, "bind-a", hasID)
	want := []reconcile.Binding{opsView, dev} // sorted by principal
	if !reflect.DeepEqual(c.Bindings, want) {
		t.Errorf("bindings %v, want %v", c.Bindings, want)
	}
	if !reflect.DeepEqual(c.ForeignBindings, []reconcile.Binding{ops}) {
		t.Errorf("foreign bindings %v, want the one made outside fleetd", c.ForeignBindings)
	}
	if _, err := ri.Get(ctx, fu.GetName(), metav1.GetOptions{}); err != nil {
		t.Errorf("the foreign binding is gone: %v", err)
	}
	if !strings.Contains(logs.String(), "Binding not made by fleetd left alone") {
		t.Errorf("the drift is not logged: %s", logs)
	}
}

// TestMachines lists a cluster's Cluster API machines after its agents
// register, deletes one with drain excluded (annotations first), and refuses
// to delete a machine of another cluster.
func TestMachines(t *testing.T) {
	rs := needRancher(t)
	r := newRegistry(t, "", nil)
	ctx := context.Background()
	for _, name := range []string{"mach-a", "mach-b"} {
		if _, err := r.Register(ctx, reconcile.RegisterSpec{Name: name, Team: "t", KubernetesVersion: "v1.31.4+rke2r1"}); err != nil {
			t.Fatal(err)
		}
		waitCluster(t, r, name, hasID)
	}
	join := func(cluster string, roles []string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			cmd, err := r.JoinCommand(ctx, cluster, roles)
			if err == nil {
				return cmd
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	machines := map[string]string{"mach-a-control-1": "mach-a", "mach-a-worker-1": "mach-a", "mach-b-worker-1": "mach-b"}
	for m, cluster := range machines {
		roles := []string{"worker"}
		if strings.Contains(m, "control") {
			roles = []string{"etcd", "controlplane"}
		}
		got, err := rs.Register(ctx, reconcile.CloudInit(m, join(cluster, roles)))
		if err != nil {
			t.Fatal(err)
		}
		if got != reconcile.RancherMachineName(m) {
			t.Fatalf("Rancher named the machine of %s %s, fleetd expects %s", m, got, reconcile.RancherMachineName(m))
		}
	}
	// The nodes join (the stand-in's controllers may have run already).
	_ = rs.Step(ctx)
	if _, err := r.Clusters(ctx); err != nil {
		t.Fatal(err)
	}
	ms, err := r.Machines(ctx, "mach-a")
	if err != nil {
		t.Fatal(err)
	}
	want := []reconcile.RancherMachine{
		{Name: reconcile.RancherMachineName("mach-a-control-1"), Node: "mach-a-control-1", Phase: reconcile.RancherMachineRunning},
		{Name: reconcile.RancherMachineName("mach-a-worker-1"), Node: "mach-a-worker-1", Phase: reconcile.RancherMachineRunning},
	}
	if want[0].Name > want[1].Name {
		want[0], want[1] = want[1], want[0]
	}
	if !reflect.DeepEqual(ms, want) {
		t.Fatalf("machines %+v, want %+v", ms, want)
	}
	// Without a fresh Clusters call, Machines lists again.
	again, err := r.Machines(ctx, "mach-a")
	if err != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("second Machines: %+v, %v", again, err)
	}

	// Hold the machine so its annotations and deletion can be seen.
	mri := admin(t).Resource(MachineGVR("v1beta2")).Namespace("fleet-default")
	worker := reconcile.RancherMachineName("mach-a-worker-1")
	hold := fmt.Sprintf(`{"metadata":{"finalizers":["test.fleetd.io/hold"]}}`)
	if _, err := mri.Patch(ctx, worker, "application/merge-patch+json", []byte(hold), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteMachine(ctx, "mach-b", worker, true); reconcile.Classify(err) != reconcile.ReactStall {
		t.Errorf("deleting mach-a's machine as mach-b's: %v, want stalled", err)
	}
	if err := r.DeleteMachine(ctx, "mach-a", worker, true); err != nil {
		t.Fatal(err)
	}
	u, err := mri.Get(ctx, worker, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u.GetDeletionTimestamp() == nil || u.GetAnnotations()[AnnotationExcludeDrain] == "" || u.GetAnnotations()[AnnotationExcludeDetach] == "" {
		t.Errorf("machine after DeleteMachine(excludeDrain): deleting %v, annotations %v", u.GetDeletionTimestamp() != nil, u.GetAnnotations())
	}
	if err := r.DeleteMachine(ctx, "mach-a", worker, true); err != nil {
		t.Fatalf("DeleteMachine of a deleting machine: %v", err)
	}
	ms, _ = r.Machines(ctx, "mach-a")
	for _, m := range ms {
		if m.Name == worker && m.Phase != reconcile.RancherMachineDeleting {
			t.Errorf("a deleting machine has phase %s", m.Phase)
		}
	}
	if _, err := mri.Patch(ctx, worker, "application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if err := r.DeleteMachine(ctx, "mach-a", "custom-000000000000", false); err != nil {
		t.Fatalf("DeleteMachine of a gone machine: %v", err)
	}
}

// TestRegistryLogsThroughTheSyncsLogger: a Register made for the reconciler
// logs on the context's logger, so the line carries the sync's cluster and
// revision once each (JSON log parsers reject repeated keys).
func TestRegistryLogsThroughTheSyncsLogger(t *testing.T) {
	own := &logbuf.Buffer{}
	r := newRegistry(t, "", own)
	sync := &logbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(sync, nil)).With("cluster", "log-a", "revision", "0123456")
	ctx := reconcile.WithLogger(context.Background(), log)
	if _, err := r.Register(ctx, reconcile.RegisterSpec{Name: "log-a", Team: "payments", KubernetesVersion: "v1.31.4+rke2r1"}); err != nil {
		t.Fatal(err)
	}
	line := sync.String()
	if !strings.Contains(line, `"msg":"Creating provisioning cluster"`) || !strings.Contains(line, `"revision":"0123456"`) {
		t.Fatalf("the sync's logger got %q", line)
	}
	if strings.Count(line, `"cluster":`) != 1 {
		t.Errorf("the line repeats the cluster key: %s", line)
	}
	if strings.Contains(own.String(), "Creating provisioning cluster") {
		t.Error("the line went to the registry's own logger, without the sync's attributes")
	}
}
