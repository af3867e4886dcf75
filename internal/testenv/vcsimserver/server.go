// Package vcsimserver serves govmomi's vCenter simulator (the VPX model) on
// 127.0.0.1 over HTTPS with a self-signed certificate, prepared the way
// fleetd's vSphere provider expects a vCenter: a template to clone, and the
// inventory names a fleet.yaml would use. cmd/vcsim-lite runs it as a
// program; tests run it in-process and use its hooks to delay methods,
// inject faults and count round trips.
package vcsimserver

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/fleetd/fleetd/schema"
)

// Inventory names of the VPX model that a fleet.yaml uses.
const (
	Datacenter     = "DC0"
	ComputeCluster = "DC0_C0"
	ResourcePool   = "/DC0/host/DC0_C0/Resources"
	Datastore      = "LocalDS_0"
	Network        = "DC0_DVPG0"
	// DefaultTemplate is the name of the VM the server turns into a template.
	DefaultTemplate = "fleetd-template"
	// templateSource is the model VM that becomes the template.
	templateSource = "DC0_C0_RP0_VM0"
)

// Fault decides whether a SOAP call fails before the simulator serves it:
// it returns the fault to answer with, or nil. It sees the method name (such
// as CloneVM_Task), the object called, its name (for entities) and the
// request (such as *types.CloneVM_Task). It must be safe for concurrent use.
type Fault func(method string, this types.ManagedObjectReference, name string, req any) types.BaseMethodFault

// Options configure a Server. The zero value serves the default VPX model on
// a free port of 127.0.0.1.
type Options struct {
	// Listen is host:port; empty means 127.0.0.1:0 (a free port).
	Listen string
	// Clusters and HostsPerCluster size the model (defaults 1 and 3); VMs is
	// the number of VMs the model puts in each cluster and standalone host
	// (default 2, at least 1: one of them becomes the template).
	Clusters, HostsPerCluster, VMs int
	// Template is the template's name (default DefaultTemplate).
	Template string
	// Username and Password are the only accepted login; empty means any
	// non-empty user and password.
	Username, Password string
	// MethodDelay delays the named SOAP methods (such as CloneVM_Task) by
	// that many milliseconds, as a slow vCenter would.
	MethodDelay map[string]int
	// Fault, when set, may fail any SOAP call with a vCenter fault.
	Fault Fault
	// HTTPStatus, when set, may answer a SOAP call with an HTTP error status
	// instead (such as 503, as an overloaded vCenter does); 0 passes.
	HTTPStatus func(method string) int
	// ConcurrentTasks lets the simulator run VM tasks (clone, power, destroy)
	// at once. Off by default: the simulator then races with itself (see
	// serializer), which `go test -race` reports.
	ConcurrentTasks bool
}

// Server is a running simulator.
type Server struct {
	// URL is the SDK endpoint, https://127.0.0.1:port/sdk, without credentials.
	URL *url.URL
	// Template is the name of the template VM.
	Template string

	model   *simulator.Model
	sim     *simulator.Server
	https   *http.Server
	front   *front
	certPEM []byte
}

// Start builds the model, prepares the template and starts serving.
func Start(ctx context.Context, o Options) (_ *Server, err error) {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.Template == "" {
		o.Template = DefaultTemplate
	}
	cert, certPEM, err := selfSigned()
	if err != nil {
		return nil, err
	}
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("vcsimserver: %w", err)
	}
	defer func() {
		if err != nil {
			_ = l.Close()
		}
	}()

	m := simulator.VPX()
	if o.Clusters > 0 {
		m.Cluster = o.Clusters
	}
	if o.HostsPerCluster > 0 {
		m.ClusterHost = o.HostsPerCluster
	}
	if o.VMs > 0 {
		m.Machine = o.VMs
	}
	if err := m.Create(); err != nil {
		return nil, fmt.Errorf("vcsimserver: build model: %w", err)
	}
	defer func() {
		if err != nil {
			m.Remove()
		}
	}()
	if err := prepareTemplate(ctx, m, o.Template); err != nil {
		return nil, err
	}
	if o.Fault != nil {
		m.Map().Handler = func(ctx *simulator.Context, method *simulator.Method) (mo.Reference, types.BaseMethodFault) {
			var name string
			if e, ok := ctx.Map.Get(method.This).(mo.Entity); ok {
				ctx.WithLock(e, func() { name = e.Entity().Name })
			}
			return nil, o.Fault(method.Name, method.This, name, method.Body)
		}
	}
	if o.Username != "" {
		m.Service.Listen = &url.URL{User: url.UserPassword(o.Username, o.Password)}
	}
	// The simulator serves plain HTTP on a port of its own that nobody uses;
	// clients reach its handlers through front, over TLS.
	sim := m.Service.NewServer()
	f := &front{next: m.Service.ServeMux, delay: o.MethodDelay, httpFault: o.HTTPStatus, counts: map[string]int64{}, inflight: map[string]int64{}, peak: map[string]int64{}}
	if !o.ConcurrentTasks {
		f.serial = &serializer{reg: m.Map()}
		m.Map().AddHandler(f.serial)
	}
	hs := &http.Server{
		Handler:           f,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = hs.ServeTLS(l, "", "") }()

	u := &url.URL{Scheme: "https", Host: l.Addr().String(), Path: "/sdk"}
	return &Server{URL: u, Template: o.Template, model: m, sim: sim, https: hs, front: f, certPEM: certPEM}, nil
}

// prepareTemplate powers off the first VM of the cluster, renames it and
// marks it as a template, through an in-process client.
func prepareTemplate(ctx context.Context, m *simulator.Model, name string) error {
	c, err := vim25.NewClient(ctx, m.Service)
	if err != nil {
		return fmt.Errorf("vcsimserver: in-process client: %w", err)
	}
	finder := find.NewFinder(c, false)
	dc, err := finder.Datacenter(ctx, Datacenter)
	if err != nil {
		return fmt.Errorf("vcsimserver: %w", err)
	}
	finder.SetDatacenter(dc)
	vm, err := finder.VirtualMachine(ctx, templateSource)
	if err != nil {
		return fmt.Errorf("vcsimserver: template source: %w", err)
	}
	if t, err := vm.PowerOff(ctx); err == nil {
		_ = t.Wait(ctx) // already off is fine
	}
	t, err := vm.Rename(ctx, name)
	if err == nil {
		err = t.Wait(ctx)
	}
	if err != nil {
		return fmt.Errorf("vcsimserver: rename template: %w", err)
	}
	if err := vm.MarkAsTemplate(ctx); err != nil {
		return fmt.Errorf("vcsimserver: mark template: %w", err)
	}
	return nil
}

// Model returns the simulator model.
func (s *Server) Model() *simulator.Model { return s.model }

// Client returns an in-process client of the simulator that bypasses HTTP
// and sessions: an administrator's back door for tests. Its calls take the
// front's inventory lock like any request (alone, but for long polls), so a
// test may look while fleetd works: the simulator races with itself
// otherwise.
func (s *Server) Client(ctx context.Context) (*vim25.Client, error) {
	return vim25.NewClient(ctx, lockedRoundTripper{rt: s.model.Service, mu: &s.front.inventory})
}

// lockedRoundTripper runs each back-door call under the front's inventory
// lock.
type lockedRoundTripper struct {
	rt soap.RoundTripper
	mu *sync.RWMutex
}

func (l lockedRoundTripper) RoundTrip(ctx context.Context, req, res soap.HasFault) error {
	name := strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%T", req), "*methods."), "Body")
	if !longPollMethods[name] {
		l.mu.Lock()
		defer l.mu.Unlock()
	}
	return l.rt.RoundTrip(ctx, req, res)
}

// CertificatePEM returns the server's self-signed certificate, the CA a
// client trusts.
func (s *Server) CertificatePEM() []byte { return s.certPEM }

// WriteCA writes CertificatePEM to path.
func (s *Server) WriteCA(path string) error {
	return os.WriteFile(path, s.certPEM, 0o644)
}

// Requests returns the number of SOAP requests served so far.
func (s *Server) Requests() int64 { return s.front.total.Load() }

// RequestsByMethod returns the number of SOAP requests served so far by
// method name.
func (s *Server) RequestsByMethod() map[string]int64 { return s.front.snapshot() }

// PeakInFlight returns the most calls of method (such as CloneVM_Task) that
// were in flight at once, delays included.
func (s *Server) PeakInFlight(method string) int64 { return s.front.peakOf(method) }

// Spec returns the vsphere block of a fleet.yaml for this server, with
// machines under folder.
func (s *Server) Spec(folder, credentials, caFile string) schema.VSphereProvider {
	return schema.VSphereProvider{
		Server:         s.URL.String(),
		Credentials:    credentials,
		Datacenter:     Datacenter,
		ComputeCluster: ComputeCluster,
		Datastore:      Datastore,
		Network:        Network,
		Folder:         folder,
		Template:       s.Template,
		CAFile:         caFile,
	}
}

// TerminateSessions ends every client session, as a vCenter administrator
// (or a session timeout) would, and returns how many it ended.
func (s *Server) TerminateSessions(ctx context.Context) (int, error) {
	c, err := s.Client(ctx)
	if err != nil {
		return 0, err
	}
	var sm mo.SessionManager
	if err := property.DefaultCollector(c).RetrieveOne(ctx, *c.ServiceContent.SessionManager, []string{"sessionList"}, &sm); err != nil {
		return 0, fmt.Errorf("vcsimserver: list sessions: %w", err)
	}
	var keys []string
	for _, us := range sm.SessionList {
		keys = append(keys, us.Key)
	}
	if len(keys) == 0 {
		return 0, nil
	}
	if err := session.NewManager(c).TerminateSession(ctx, keys); err != nil {
		return 0, fmt.Errorf("vcsimserver: terminate sessions: %w", err)
	}
	return len(keys), nil
}

// Close stops the server and removes the model.
func (s *Server) Close() {
	_ = s.https.Close()
	s.sim.Close()
	s.model.Remove()
}
