package vsphere

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"syscall"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/task"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/fleetd/fleetd/reconcile"
)

// Error is a failed vCenter operation on one object: the operation, the
// object's name, the vCenter fault type and message. It unwraps to the
// govmomi error, so fault.Is and errors.As see the fault.
type Error struct {
	Op     string // clone, power-off, destroy, list, ...
	Object string // the VM or inventory object's name
	Fault  string // the vCenter fault type, such as InsufficientResourcesFault; empty for a non-fault error
	Err    error
}

// Error reads "vsphere: <op> <object>: <fault type>: <vCenter's message>".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("vsphere: ")
	b.WriteString(e.Op)
	if e.Object != "" {
		b.WriteString(" ")
		b.WriteString(e.Object)
	}
	b.WriteString(": ")
	msg := faultMessage(e.Err)
	if e.Fault != "" && !strings.Contains(msg, e.Fault) {
		b.WriteString(e.Fault)
		if msg != "" {
			b.WriteString(": ")
		}
	}
	b.WriteString(msg)
	return b.String()
}

// Unwrap returns the govmomi error.
func (e *Error) Unwrap() error { return e.Err }

// faultMessage is vCenter's message for err, with the noise of the SOAP
// layers left out.
func faultMessage(err error) string {
	var te task.Error
	if errors.As(err, &te) && te.LocalizedMethodFault != nil {
		if msg := te.LocalizedMessage; msg != "" && !strings.HasPrefix(msg, "*types.") {
			return msg
		}
		return ""
	}
	if soap.IsSoapFault(err) {
		if s := soap.ToSoapFault(err).String; s != "" {
			return s
		}
		return ""
	}
	return err.Error()
}

// faultName returns the type name of the first vCenter fault in err.
func faultName(err any) string {
	var name string
	func() {
		defer func() { _ = recover() }() // fault.In panics on values it cannot walk
		fault.In(err, func(f types.BaseMethodFault, _ string, _ []types.LocalizableMessage) bool {
			t := reflect.TypeOf(f)
			for t.Kind() == reflect.Pointer {
				t = t.Elem()
			}
			name = t.Name()
			return true
		})
	}()
	return name
}

// wrap makes err an *Error for op on object and marks it by kind: transient
// when retrying may help, stalled when only a change of fleet.yaml can.
func wrap(op, object string, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	e := &Error{Op: op, Object: object, Fault: faultName(err), Err: err}
	return classify(e)
}

func classify(err error) error {
	switch {
	case isStalled(err):
		return reconcile.Stalled(err)
	case isTransient(err):
		return reconcile.Transient(err)
	}
	return err
}

// transientFaults are vCenter faults that go away by themselves.
var transientFaults = []types.BaseMethodFault{
	&types.HostCommunication{},
	&types.HostNotConnected{},
	&types.HostNotReachable{},
	&types.ConcurrentAccess{},
	&types.TaskInProgress{},
	&types.ResourceInUse{},
	&types.NotAuthenticated{}, // still unauthenticated after a new login
	&types.RequestCanceled{},
}

func isTransient(err error) bool {
	if isTLSVerification(err) {
		return false
	}
	for _, f := range transientFaults {
		if fault.Is(err, f) {
			return true
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	// An HTTP status instead of a SOAP answer: throttling and overload
	// (vCenter answers 503, a proxy 429, 502 or 504) pass; another status
	// (a wrong path, a proxy's refusal) does not, although govmomi's error
	// for it is a *url.Error, a net.Error.
	var hs *HTTPStatusError
	if errors.As(err, &hs) {
		return transientStatus(hs.Code)
	}
	var ne net.Error
	return errors.As(err, &ne)
}

func isTLSVerification(err error) bool {
	var (
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		cve *tls.CertificateVerificationError
	)
	return errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &cve)
}

// notFoundError is an inventory object fleet.yaml names that vCenter lacks.
type notFoundError struct {
	what, name string
	err        error
}

func (e *notFoundError) Error() string {
	return fmt.Sprintf("vsphere: %s %q not found: %v", e.what, e.name, e.err)
}
func (e *notFoundError) Unwrap() error { return e.err }

// specError is a spec that cannot be satisfied, such as a disk smaller than
// the template's.
type specError struct{ msg string }

func (e *specError) Error() string { return "vsphere: " + e.msg }

// refusedFaults are vCenter's refusals of the credentials themselves: a
// wrong user or password, or a user without the privilege to log in.
var refusedFaults = []types.BaseMethodFault{
	&types.InvalidLogin{},
	&types.NoPermission{},
}

// isRefused reports whether vCenter refused the credentials.
func isRefused(err error) bool {
	for _, f := range refusedFaults {
		if fault.Is(err, f) {
			return true
		}
	}
	return false
}

func isStalled(err error) bool {
	if isRefused(err) {
		return true
	}
	var nf *notFoundError
	var se *specError
	return errors.As(err, &nf) || errors.As(err, &se)
}
