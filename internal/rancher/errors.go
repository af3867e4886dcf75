package rancher

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fleetd/fleetd/reconcile"
)

// APIError wraps err from a Kubernetes API call through Rancher with the
// operation and object, and gives it reconcile's kind (STYLE.md 7): a refused
// token stalls (only a configuration change fixes it), a conflict, throttling,
// a 5xx or a network failure is transient, anything else is returned as it
// is. Any secret found in the message is replaced, so the error can be logged
// and written to status.
func APIError(op, object string, err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	wrapped := &redacted{msg: redact(fmt.Sprintf("rancher: %s %s: %v", op, object, err), secrets), err: err}
	if clusterUnavailable(err) {
		// Whether this is a fault is the caller's to decide from the
		// provisioning Cluster: a new cluster answers so until its first
		// machine registers.
		return reconcile.Transient(&reconcile.UnavailableError{Err: wrapped})
	}
	switch {
	case apierrors.IsUnauthorized(err):
		// A refusal of the credentials: fleetd stops calling Rancher until
		// rancher.token, or what it names, changes.
		return reconcile.Stalled(&reconcile.CredentialsError{Peer: "Rancher", Source: "rancher.token",
			Err: &redacted{msg: wrapped.msg + " (Rancher refused the API token: check rancher.token in fleet.yaml and that the token is valid and not expired)", err: err}})
	case apierrors.IsForbidden(err):
		return reconcile.Stalled(&reconcile.CredentialsError{Peer: "Rancher", Source: "rancher.token",
			Err: &redacted{msg: wrapped.msg + " (the API token lacks permission for this: give its user access to the object)", err: err}})
	case apierrors.IsConflict(err), apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err),
		apierrors.IsTimeout(err), apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err), apierrors.IsUnexpectedServerError(err):
		return reconcile.Transient(wrapped)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return reconcile.Stalled(wrapped)
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Code >= 500 {
		return reconcile.Transient(wrapped)
	}
	if connectionFailed(err) {
		return reconcile.Transient(wrapped)
	}
	return wrapped
}

// connectionFailed reports whether err is a failure to reach the API or to
// get its answer, by type: client-go returns a *url.Error (a net.Error)
// around the dial or read error, and the sentinels below are what those
// wrap. A verification failure of the server's certificate is not one: only
// a change of rancher.caFile or the certificate helps.
func connectionFailed(err error) bool {
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify) {
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// ReasonClusterUnavailable is the Status reason with which Rancher answers a
// downstream cluster's API (<url>/k8s/clusters/<id>/...) while no agent of the
// cluster is connected: before the cluster is provisioned ("cluster not
// provisioned") and when its agent is disconnected. The code is 503.
const ReasonClusterUnavailable metav1.StatusReason = "ClusterUnavailable"

// clusterUnavailable reports whether err is Rancher's answer for a downstream
// cluster without a connected agent: a Status of reason ClusterUnavailable
// and code 503. The message is never read: it is prose and changes between
// Rancher versions.
func clusterUnavailable(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return false
	}
	s := st.Status()
	return s.Reason == ReasonClusterUnavailable && s.Code == http.StatusServiceUnavailable
}

// redacted is an error whose message had secrets removed; it still unwraps to
// the API error so callers can test for NotFound and the like.
type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return s
}
