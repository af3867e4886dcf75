package rancher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/fleetd/fleetd/reconcile"
)

var secretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// TestAPIErrorKindsOfRealFaults classifies what the real kube-apiserver and
// client-go return: each kind of error by its Status code and reason or by
// its Go type, never by its message.
func TestAPIErrorKindsOfRealFaults(t *testing.T) {
	needRancher(t)
	ctx := context.Background()
	client := func(t *testing.T, mutate func(*rest.Config)) dynamic.ResourceInterface {
		t.Helper()
		rc := rest.CopyConfig(shared.Env.Config)
		if mutate != nil {
			mutate(rc)
		}
		d, err := dynamic.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		return d.Resource(secretsGVR).Namespace("default")
	}
	secret := func(name string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("v1")
		u.SetKind("Secret")
		u.SetName(name)
		return u
	}
	// answering is an HTTP transport that answers every request with a
	// Status of code, as an overloaded API server or a proxy in front of
	// it does; client-go decodes it as it would the server's.
	answering := func(code int, reason metav1.StatusReason) func(*rest.Config) {
		return func(rc *rest.Config) {
			rc.WrapTransport = func(http.RoundTripper) http.RoundTripper {
				return roundTripFunc(func(req *http.Request) (*http.Response, error) {
					body := fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"injected","reason":%q,"code":%d}`, reason, code)
					return &http.Response{StatusCode: code, Status: http.StatusText(code), Request: req,
						Header: http.Header{"Content-Type": []string{"application/json"}},
						Body:   io.NopCloser(bytes.NewBufferString(body))}, nil
				})
			}
		}
	}
	closedPort := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	hangingUp := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return ln.Addr().String()
	}

	cases := []struct {
		name string
		call func(t *testing.T) error
		want reconcile.Reaction
	}{
		{"401 a refused token", func(t *testing.T) error {
			_, err := client(t, func(rc *rest.Config) { rc.BearerToken = "not-the-token" }).List(ctx, metav1.ListOptions{})
			return err
		}, reconcile.ReactStall},
		{"403 a user without permission", func(t *testing.T) error {
			cert, key, err := shared.Env.CA.Issue("nobody")
			if err != nil {
				t.Fatal(err)
			}
			_, err = client(t, func(rc *rest.Config) {
				rc.BearerToken = ""
				rc.CertData, rc.KeyData = cert, key
			}).List(ctx, metav1.ListOptions{})
			return err
		}, reconcile.ReactStall},
		{"404 is the caller's", func(t *testing.T) error {
			_, err := client(t, nil).Get(ctx, "no-such-secret", metav1.GetOptions{})
			return err
		}, reconcile.ReactFail},
		{"409 an update from a stale read", func(t *testing.T) error {
			c := client(t, nil)
			u, err := c.Create(ctx, secret("kinds-conflict"), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Delete(ctx, "kinds-conflict", metav1.DeleteOptions{}) })
			fresh := u.DeepCopy()
			fresh.SetLabels(map[string]string{"a": "1"})
			if _, err := c.Update(ctx, fresh, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			u.SetLabels(map[string]string{"a": "2"})
			_, err = c.Update(ctx, u, metav1.UpdateOptions{})
			return err
		}, reconcile.ReactRetry},
		{"422 an invalid object", func(t *testing.T) error {
			_, err := client(t, nil).Create(ctx, secret("Not_A_DNS_Name"), metav1.CreateOptions{})
			return err
		}, reconcile.ReactStall},
		{"429 throttled", func(t *testing.T) error {
			_, err := client(t, answering(http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests)).List(ctx, metav1.ListOptions{})
			return err
		}, reconcile.ReactRetry},
		{"500", func(t *testing.T) error {
			_, err := client(t, answering(http.StatusInternalServerError, metav1.StatusReasonInternalError)).List(ctx, metav1.ListOptions{})
			return err
		}, reconcile.ReactRetry},
		{"502 from a proxy", func(t *testing.T) error {
			_, err := client(t, answering(http.StatusBadGateway, "")).List(ctx, metav1.ListOptions{})
			return err
		}, reconcile.ReactRetry},
		{"503", func(t *testing.T) error {
			_, err := client(t, answering(http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable)).List(ctx, metav1.ListOptions{})
			return err
		}, reconcile.ReactRetry},
		{"connection refused", func(t *testing.T) error {
			_, err := client(t, func(rc *rest.Config) { rc.Host = "https://" + closedPort() }).List(ctx, metav1.ListOptions{})
			return err
		}, reconcile.ReactRetry},
		{"connection closed before an answer", func(t *testing.T) error {
			// A create: client-go's transport retries a GET after a
			// connection reset itself, ten times a second apart.
			addr := hangingUp(t)
			_, err := client(t, func(rc *rest.Config) { rc.Host = "https://" + addr }).Create(ctx, secret("kinds-eof"), metav1.CreateOptions{})
			return err
		}, reconcile.ReactRetry},
		{"a certificate of an unknown authority", func(t *testing.T) error {
			_, err := client(t, func(rc *rest.Config) { rc.CAData = nil }).List(ctx, metav1.ListOptions{})
			return err
		}, reconcile.ReactFail},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.call(t)
			if raw == nil {
				t.Fatal("the call did not fail")
			}
			err := APIError("list", "default/secrets", raw, shared.Env.Token)
			if got := reconcile.Classify(err); got != tc.want {
				t.Errorf("%v (%T): reaction %v, want %v", raw, raw, got, tc.want)
			}
			if !errors.Is(err, raw) {
				t.Error("the API error is not wrapped")
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
