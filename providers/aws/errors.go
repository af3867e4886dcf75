package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"

	"github.com/fleetd/fleetd/reconcile"
)

// ErrNotOwned is the error Delete returns, wrapped, for an instance that does
// not carry the fleet's tag.
var ErrNotOwned = errors.New("instance is not owned by the fleet (no fleetd.io/fleet tag with the fleet's name)")

// EC2 error codes the provider reacts to.
const (
	codeInstanceNotFound  = "InvalidInstanceID.NotFound"
	codeParameterMismatch = "IdempotentParameterMismatch"
)

// stalledCodes are errors that only a change of fleet.yaml fixes: an image,
// subnet, security group or instance profile that does not exist, or an
// instance type the region or zone does not offer.
var stalledCodes = map[string]bool{
	"InvalidAMIID.NotFound":     true,
	"InvalidAMIID.Malformed":    true,
	"InvalidAMIID.Unavailable":  true,
	"InvalidSubnetID.NotFound":  true,
	"InvalidSubnetID.Malformed": true,
	"InvalidGroup.NotFound":     true,
	"InvalidGroupId.Malformed":  true,
	"InvalidGroupId.NotFound":   true,
	"InvalidInstanceType":       true,
	"Unsupported":               true,
	"OptInRequired":             true,
	"Blocked":                   true,
	// Account quotas: a person raises them, or lowers the fleet's demand.
	"InstanceLimitExceeded": true,
	"VcpuLimitExceeded":     true,
}

// refusedCodes are refusals of the credentials or their permissions:
// retrying with the same ones cannot help, so the provider is not called
// again until they change (reconcile.CredentialsError).
var refusedCodes = map[string]bool{
	"AuthFailure":           true,
	"UnauthorizedOperation": true,
	"InvalidClientTokenId":  true,
	"SignatureDoesNotMatch": true,
}

// transientCodes are errors that go away by themselves. The SDK has already
// retried them MaxAttempts times when they reach the provider.
var transientCodes = map[string]bool{
	"RequestLimitExceeded":         true,
	"Throttling":                   true,
	"ThrottlingException":          true,
	"RequestThrottled":             true,
	"InternalError":                true,
	"InternalFailure":              true,
	"ServiceUnavailable":           true,
	"Unavailable":                  true,
	"InsufficientInstanceCapacity": true,
	"InsufficientCapacity":         true,
}

// apiCode returns the EC2 error code of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// classify marks err by the reaction it needs (reconcile.Classify): a
// throttle, a 5xx, an exhausted retry quota or a connection error is
// transient; a reference to something that does not exist stalls. Others
// are returned as they are.
func classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	code := apiCode(err)
	switch {
	case refusedCodes[code]:
		return reconcile.Stalled(&reconcile.CredentialsError{Peer: "AWS", Err: err})
	case stalledCodes[code]:
		return reconcile.Stalled(err)
	case transientCodes[code]:
		return reconcile.Transient(err)
	}
	var quota ratelimit.QuotaExceededError
	if errors.As(err, &quota) {
		return reconcile.Transient(err)
	}
	var resp *awshttp.ResponseError
	if errors.As(err, &resp) && resp.HTTPStatusCode() >= 500 {
		return reconcile.Transient(err)
	}
	if code == "" && retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == sdkaws.TrueTernary {
		return reconcile.Transient(err)
	}
	return err
}

// fail wraps err from an EC2 call with the operation and the object, with
// every secret removed from its message, and classifies it.
func fail(op, object string, err error, secrets ...string) error {
	return classify(fmt.Errorf("aws: %s %s: %w", op, object, redact(err, secrets...)))
}

// redactedError carries an error whose message had secrets removed. Unwrap
// keeps the original reachable for errors.As classification; its text is
// never printed by the provider.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact returns err with each non-empty secret in its message replaced,
// longest first.
func redact(err error, secrets ...string) error {
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	msg := err.Error()
	changed := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// userDataSecrets returns what must never appear in an error about a machine
// with userData: the document, its base64 form, and each word long enough to
// be a token, since a message may quote a fragment.
func userDataSecrets(userData []byte, encoded string) []string {
	const minWord = 12
	out := []string{string(userData), encoded}
	words := strings.FieldsFunc(string(userData), func(r rune) bool {
		return unicode.IsSpace(r) || strings.ContainsRune("=\"'`,;", r)
	})
	for _, w := range words {
		if len(w) >= minWord {
			out = append(out, w)
		}
	}
	return out
}
