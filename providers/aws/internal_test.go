package aws

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

func TestSubnetFor(t *testing.T) {
	p := &Provider{spec: schema.AWSProvider{Subnets: []string{"a", "b", "c"}}}
	for _, c := range []struct{ name, want string }{
		{"prod-workers-7c3a1-0", "a"},
		{"prod-workers-7c3a1-1", "b"},
		{"prod-workers-7c3a1-2", "c"},
		{"prod-workers-7c3a1-3", "a"},
		{"prod-workers-7c3a1-301", "b"},
	} {
		if got := p.subnetFor(c.name); got != c.want {
			t.Errorf("subnetFor(%q) = %q, want %q", c.name, got, c.want)
		}
	}
	// Without an ordinal: a stable choice by hash.
	for _, name := range []string{"odd", "no-ordinal-x", ""} {
		if a, b := p.subnetFor(name), p.subnetFor(name); a != b {
			t.Errorf("subnetFor(%q) is not stable: %q, %q", name, a, b)
		}
	}
	one := &Provider{spec: schema.AWSProvider{Subnets: []string{"only"}}}
	if got := one.subnetFor("x-7"); got != "only" {
		t.Errorf("one subnet: %q", got)
	}
}

func apiErr(code string) error {
	return &smithy.GenericAPIError{Code: code, Message: "m"}
}

func withStatus(status int, err error) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: err,
	}}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want reconcile.Reaction
	}{
		{"nil", nil, reconcile.ReactNone},
		{"persistent throttling", &retry.MaxAttemptsError{Attempt: 3, Err: withStatus(503, apiErr("RequestLimitExceeded"))}, reconcile.ReactRetry},
		{"throttling under another name", apiErr("Throttling"), reconcile.ReactRetry},
		{"internal error", withStatus(500, apiErr("InternalError")), reconcile.ReactRetry},
		{"unmodelled 502", withStatus(502, apiErr("UnknownError")), reconcile.ReactRetry},
		{"retry quota exhausted", errors.Join(withStatus(400, apiErr("Whatever")), fmt.Errorf("failed to get rate limit token, %w", ratelimit.QuotaExceededError{})), reconcile.ReactRetry},
		{"connection refused", &retry.MaxAttemptsError{Attempt: 3, Err: &smithyhttp.RequestSendError{Err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}}, reconcile.ReactRetry},
		{"capacity", apiErr("InsufficientInstanceCapacity"), reconcile.ReactRetry},
		{"unknown image", withStatus(400, apiErr("InvalidAMIID.NotFound")), reconcile.ReactStall},
		{"unknown subnet", apiErr("InvalidSubnetID.NotFound"), reconcile.ReactStall},
		{"unknown security group", apiErr("InvalidGroup.NotFound"), reconcile.ReactStall},
		{"auth", withStatus(401, apiErr("AuthFailure")), reconcile.ReactStall},
		{"bad parameter", withStatus(400, apiErr("InvalidParameterValue")), reconcile.ReactFail},
		{"cancelled", fmt.Errorf("op: %w", context.Canceled), reconcile.ReactFail},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := reconcile.Classify(classify(c.err)); got != c.want {
				t.Errorf("Classify(classify(%v)) = %v, want %v", c.err, got, c.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	ud := []byte("#cloud-config\nruncmd:\n  - install.sh --token=tok-abcdef0123456789 --server 'https://rancher.example'\n")
	secrets := userDataSecrets(ud, "ZW5jb2RlZA==")
	inner := apiErr("InvalidParameterValue")
	err := redact(fmt.Errorf("bad token tok-abcdef0123456789 in ZW5jb2RlZA==: %w", inner), secrets...)
	if strings.Contains(err.Error(), "tok-abcdef0123456789") || strings.Contains(err.Error(), "ZW5jb2RlZA==") {
		t.Errorf("redact left a secret: %v", err)
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "InvalidParameterValue" {
		t.Errorf("redact hid the error code from errors.As")
	}
	var wrapped *redactedError
	if errors.As(redact(errors.New("nothing secret"), secrets...), &wrapped) {
		t.Error("redact wrapped an error without secrets")
	}
}

func TestClientTokenShape(t *testing.T) {
	tok := ClientToken("acme", "payments-prod", "payments-prod-workers-7c3a1-0")
	if len(tok) != 64 || strings.Trim(tok, "0123456789abcdef") != "" {
		t.Errorf("ClientToken = %q, want 64 hex digits", tok)
	}
	if n := nextToken(tok, "x"); n == tok || len(n) != 64 {
		t.Errorf("nextToken = %q", n)
	}
}
