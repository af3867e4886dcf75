package rancher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/fleetd/fleetd/reconcile"
	fleetschema "github.com/fleetd/fleetd/schema"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

// TestTokenNeverLeaks runs every registry operation with debug logging and
// checks that neither the API token nor a registration token appears in a
// log line or an error, including the error for a node command fleetd cannot
// use (which holds the token).
func TestTokenNeverLeaks(t *testing.T) {
	rs := needRancher(t)
	logs := &logbuf.Buffer{}
	r := newRegistry(t, "", logs)
	ctx := context.Background()
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	_, err := r.Register(ctx, reconcile.RegisterSpec{Name: "leak-a", Team: "t", KubernetesVersion: "v1.31.4+rke2r1"})
	note(err)
	c := waitCluster(t, r, "leak-a", hasID)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := r.JoinCommand(ctx, "leak-a", []string{"etcd", "controlplane", "worker"})
		if err == nil || time.Now().After(deadline) {
			note(err)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	note(r.Bind(ctx, "leak-a", reconcile.Binding{PrincipalID: "openldap_group://cn=x", Role: "cluster-member"}))
	note(r.Unbind(ctx, "leak-a", reconcile.Binding{PrincipalID: "openldap_group://cn=x", Role: "cluster-member"}))
	_, err = r.Machines(ctx, "leak-a")
	note(err)
	note(r.DeleteMachine(ctx, "leak-a", "custom-000000000000", true))
	token := rs.RegistrationToken(c.ID)

	// Break the node command the way a future Rancher might: it still holds
	// the token, and the error must not quote it.
	tri := admin(t).Resource(TokenGVR).Namespace(c.ID)
	u, err := tri.Get(ctx, DefaultTokenName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(u.Object, "wget -O- https://x/install.sh --token "+token+" | sh", "status", "nodeCommand")
	_ = unstructured.SetNestedField(u.Object, "", "status", "tokenSecretName")
	if _, err := tri.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = r.JoinCommand(ctx, "leak-a", []string{"worker"})
	if err == nil {
		t.Fatal("a node command of an unknown form was accepted")
	}
	errs = append(errs, err)

	// A refused API token.
	bad, _ := NewWithConn(ctx, Config{Fleet: "acme", Spec: r.specForTest()}, NewConn(rs.URL, rs.Token+"x", rs.CAPEM))
	_, err = bad.Clusters(ctx)
	if err == nil {
		t.Fatal("a wrong API token was accepted")
	}
	errs = append(errs, err)

	for _, secret := range []string{rs.Token, rs.Token + "x", token} {
		if secret == "" {
			t.Fatal("no token to look for")
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a token is in the logs:\n%s", logs)
		}
		for _, err := range errs {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("a token is in an error: %v", err)
			}
		}
	}
	if logs.String() == "" {
		t.Error("nothing was logged: the check saw nothing")
	}
}

func (r *Registry) specForTest() (s fleetschema.Rancher) {
	s.URL, s.AuthProvider, s.Namespace = r.conn.URL, r.auth, r.namespace
	return s
}

// TestAPIErrorKinds pins how API errors map onto reconcile's kinds.
func TestAPIErrorKinds(t *testing.T) {
	gr := schema.GroupResource{Group: "provisioning.cattle.io", Resource: "clusters"}
	cases := []struct {
		name string
		err  error
		want reconcile.Reaction
	}{
		{"401", apierrors.NewUnauthorized("no"), reconcile.ReactStall},
		{"403", apierrors.NewForbidden(gr, "a", errors.New("no")), reconcile.ReactStall},
		{"409", apierrors.NewConflict(gr, "a", errors.New("changed")), reconcile.ReactRetry},
		{"429", apierrors.NewTooManyRequests("slow down", 1), reconcile.ReactRetry},
		{"500", apierrors.NewInternalError(errors.New("boom")), reconcile.ReactRetry},
		{"503", apierrors.NewServiceUnavailable("later"), reconcile.ReactRetry},
		{"502", apierrors.NewGenericServerResponse(http.StatusBadGateway, "get", gr, "a", "", 0, true), reconcile.ReactRetry},
		{"422", apierrors.NewInvalid(schema.GroupKind{Group: gr.Group, Kind: "Cluster"}, "a", nil), reconcile.ReactStall},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, reconcile.ReactRetry},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), reconcile.ReactRetry},
		{"EOF", fmt.Errorf("reading the answer: %w", io.ErrUnexpectedEOF), reconcile.ReactRetry},
		{"a message that only reads like a network failure", errors.New("connection refused"), reconcile.ReactFail},
		{"404 is the caller's", apierrors.NewNotFound(gr, "a"), reconcile.ReactFail},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := APIError("get", "fleet-default/a", tc.err, "s3cr3t-token")
			if got := reconcile.Classify(err); got != tc.want {
				t.Errorf("%v: reaction %v, want %v", err, got, tc.want)
			}
			if !errors.Is(err, tc.err) {
				t.Error("the API error is not wrapped")
			}
		})
	}
	err := APIError("get", "x", errors.New("bad header Bearer s3cr3t-token"), "s3cr3t-token")
	if strings.Contains(err.Error(), "s3cr3t-token") {
		t.Errorf("secret kept: %v", err)
	}
}

// TestAPIErrorClusterUnavailable pins how Rancher's answer for a downstream
// cluster without a connected agent is recognised: by the Status reason and
// code, whatever the message says.
func TestAPIErrorClusterUnavailable(t *testing.T) {
	status := func(code int32, reason metav1.StatusReason, msg string) error {
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}}
	}
	cases := []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"not provisioned", status(http.StatusServiceUnavailable, ReasonClusterUnavailable, "cluster not provisioned"), true},
		{"agent disconnected", status(http.StatusServiceUnavailable, ReasonClusterUnavailable, "cluster agent disconnected"), true},
		{"another message", status(http.StatusServiceUnavailable, ReasonClusterUnavailable, "anything at all"), true},
		{"a plain 503", apierrors.NewServiceUnavailable("cluster not provisioned"), false},
		{"the reason with another code", status(http.StatusBadGateway, ReasonClusterUnavailable, "cluster not provisioned"), false},
		{"the message alone", errors.New("cluster not provisioned"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := APIError("list nodes of", "pay", tc.err)
			var un *reconcile.UnavailableError
			if got := errors.As(err, &un); got != tc.unavailable {
				t.Errorf("%v: unavailable %t, want %t", err, got, tc.unavailable)
			}
			if tc.unavailable && reconcile.Classify(err) != reconcile.ReactRetry {
				t.Errorf("%v: reaction %v, want a retry", err, reconcile.Classify(err))
			}
		})
	}
}
