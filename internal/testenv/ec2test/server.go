package ec2test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Protocol constants of the EC2 Query API.
const (
	// APIVersion is the only Version the server accepts.
	APIVersion = "2016-11-15"
	// Namespace is the XML namespace of every successful response.
	Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"
	// OwnerID is the account that owns every reservation.
	OwnerID = "123456789012"
)

// The static credentials the server accepts. Requests must be signed with
// them (Signature Version 4); any other access key is an AuthFailure.
const (
	AccessKeyID     = "AKIAFLEETDEC2TEST001"                     //nolint:gosec // a fake endpoint's key, valid nowhere else
	SecretAccessKey = "ec2test/secret/fleetd0000000000000000000" //nolint:gosec // a fake endpoint's secret, valid nowhere else
)

// Instance states as EC2 names them.
const (
	StatePending      = "pending"
	StateRunning      = "running"
	StateShuttingDown = "shutting-down"
	StateTerminated   = "terminated"
	StateStopping     = "stopping"
	StateStopped      = "stopped"
)

// stateCodes are the documented numeric codes of the states (the low byte).
var stateCodes = map[string]int{
	StatePending:      0,
	StateRunning:      16,
	StateShuttingDown: 32,
	StateTerminated:   48,
	StateStopping:     64,
	StateStopped:      80,
}

// Instance is the server's record of one instance. Values returned by the
// server's methods are copies.
type Instance struct {
	ID               string
	ReservationID    string
	ImageID          string
	InstanceType     string
	SubnetID         string
	AvailabilityZone string
	PrivateIP        string
	State            string
	SecurityGroupIDs []string
	InstanceProfile  string
	// UserData is the base64 text as it was received.
	UserData string
	// HTTPTokens is MetadataOptions.HttpTokens as received ("" when absent).
	HTTPTokens  string
	ClientToken string
	Tags        map[string]string
	Volumes     []Volume
	LaunchTime  time.Time
}

// Volume is an EBS volume attached to an instance.
type Volume struct {
	ID                  string
	DeviceName          string
	SizeGiB             int
	VolumeType          string
	DeleteOnTermination bool
	Tags                map[string]string
}

// Request is one request as the server received it.
type Request struct {
	Action string
	// Region is the region of the request's signature scope.
	Region string
	// Form holds every parameter of the request, Action and Version included.
	Form url.Values
}

// Server is an EC2 Query API endpoint on 127.0.0.1. Its methods are safe for
// concurrent use.
type Server struct {
	// URL is the base URL to use as the SDK's BaseEndpoint.
	URL string

	ts *httptest.Server

	mu           sync.Mutex
	seq          uint64
	instances    map[string]*Instance
	order        []string // instance IDs in launch order; only appended to, forgotten ones included
	reservations map[string][]string
	tokens       map[string]tokenRecord
	images       map[string]string // image ID -> root device name
	subnets      map[string]string // subnet ID -> availability zone
	subnetOrder  []string
	hidden       map[string]bool // launched while describe lag was on
	lag          bool

	hooks    map[string]func(n int)
	throttle int
	internal int
	lose     map[string]int
	inject   map[string][]*apiError
	calls    map[string]int
	requests []Request
}

type tokenRecord struct {
	reservationID string
	fingerprint   string
}

// New starts a server on 127.0.0.1. Close it when done.
func New() *Server {
	s := &Server{
		instances:    map[string]*Instance{},
		reservations: map[string][]string{},
		tokens:       map[string]tokenRecord{},
		images:       map[string]string{},
		subnets:      map[string]string{},
		hidden:       map[string]bool{},
		lose:         map[string]int{},
		inject:       map[string][]*apiError{},
		hooks:        map[string]func(int){},
		calls:        map[string]int{},
	}
	s.ts = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.ts.URL
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.ts.Close() }

// AddImage registers an AMI and the name of its root device. RunInstances
// and DescribeImages fail with InvalidAMIID.NotFound for any other image.
func (s *Server) AddImage(id, rootDevice string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images[id] = rootDevice
}

// AddSubnet registers a subnet in an availability zone. RunInstances fails
// with InvalidSubnetID.NotFound for any other subnet.
func (s *Server) AddSubnet(id, zone string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.subnets[id]; !ok {
		s.subnetOrder = append(s.subnetOrder, id)
	}
	s.subnets[id] = zone
}

// Throttle makes the next n requests, whatever their action, fail with
// RequestLimitExceeded (HTTP 503) without doing anything.
func (s *Server) Throttle(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = n
}

// FailInternal makes the next n requests fail with InternalError (HTTP 500)
// without doing anything.
func (s *Server) FailInternal(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.internal = n
}

// FailNext makes the next request of action fail with the given error code,
// message and HTTP status, without doing anything. Calls queue up.
func (s *Server) FailNext(action, code, message string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inject[action] = append(s.inject[action], &apiError{Code: code, Message: message, Status: status})
}

// LoseResponses makes the next n requests of action take effect and then
// drops the connection before any response is written, as a network failure
// after the server acted would.
func (s *Server) LoseResponses(action string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lose[action] = n
}

// SetDescribeLag turns EC2's eventual consistency on or off. While on,
// instances launched are not returned by DescribeInstances (not even by ID);
// turning it off makes them visible.
func (s *Server) SetDescribeLag(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lag = on
	if !on {
		clear(s.hidden)
	}
}

// OnCall makes the server call fn before it handles each request of action,
// with the request's 1-based number among that action's requests. fn runs
// outside the server's lock, so it may use the server's methods, and lets a
// test change the world between a client's calls.
func (s *Server) OnCall(action string, fn func(n int)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks[action] = fn
}

// Forget removes an instance entirely, as EC2 does some time after it was
// terminated: from then on its ID is InvalidInstanceID.NotFound.
func (s *Server) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return
	}
	// The ID stays in s.order, whose positions are paging cursors.
	delete(s.instances, id)
	s.reservations[in.ReservationID] = slices.DeleteFunc(s.reservations[in.ReservationID], func(x string) bool { return x == id })
}

// Calls returns how many requests of action the server received, failed
// ones included.
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

// TotalCalls returns how many requests the server received.
func (s *Server) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		n += c
	}
	return n
}

// ResetCalls forgets the call counts and the recorded requests.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
	s.requests = nil
}

// Requests returns the recorded requests of action, oldest first.
func (s *Server) Requests(action string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.requests {
		if r.Action == action {
			out = append(out, Request{Action: r.Action, Region: r.Region, Form: cloneValues(r.Form)})
		}
	}
	return out
}

// LaunchSpec describes an instance made directly on the server, outside the
// API (an instance someone else launched).
type LaunchSpec struct {
	ImageID      string
	InstanceType string
	SubnetID     string
	Tags         map[string]string
}

// Launch makes a running instance directly, without a request, and returns
// its ID. It validates nothing.
func (s *Server) Launch(spec LaunchSpec) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rid := s.nextID("r-")
	in := s.newInstance(rid, spec.ImageID, spec.InstanceType, spec.SubnetID)
	in.State = StateRunning
	in.Tags = cloneTags(spec.Tags)
	s.addInstance(in)
	return in.ID
}

// Instance returns a copy of the instance with the given ID.
func (s *Server) Instance(id string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return Instance{}, false
	}
	return in.clone(), true
}

// Instances returns copies of every instance, terminated ones included, in
// launch order.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Instance, 0, len(s.order))
	for _, id := range s.order {
		if in, ok := s.instances[id]; ok {
			out = append(out, in.clone())
		}
	}
	return out
}

// SetState moves an instance to state, as time passing or an operator would.
func (s *Server) SetState(id, state string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return fmt.Errorf("ec2test: no instance %s", id)
	}
	if _, ok := stateCodes[state]; !ok {
		return fmt.Errorf("ec2test: unknown state %q", state)
	}
	in.State = state
	return nil
}

// apiError is an EC2 error response.
type apiError struct {
	Code    string
	Message string
	Status  int
}

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...), Status: status}
}

// EC2's documented error shape; note the capitalised element names, unlike
// those of successful responses.
type errorResponse struct {
	XMLName   xml.Name     `xml:"Response"`
	Errors    []errorEntry `xml:"Errors>Error"`
	RequestID string       `xml:"RequestID"`
}

type errorEntry struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

type handler func(s *Server, form url.Values, requestID string) (any, *apiError)

var handlers = map[string]handler{
	"RunInstances":       (*Server).runInstances,
	"DescribeInstances":  (*Server).describeInstances,
	"TerminateInstances": (*Server).terminateInstances,
	"DescribeImages":     (*Server).describeImages,
}

// maxBody bounds a request body; EC2's own limit for a POST is larger, but
// nothing fleetd sends comes near this.
const maxBody = 4 << 20

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		writeError(w, "", errorf(http.StatusBadRequest, "InvalidRequest", "The request body could not be read."))
		return
	}
	form := url.Values{}
	if r.Method == http.MethodPost {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			writeError(w, "", errorf(http.StatusBadRequest, "InvalidRequest", "Unsupported content type %q.", ct))
			return
		}
		if form, err = url.ParseQuery(string(body)); err != nil {
			writeError(w, "", errorf(http.StatusBadRequest, "InvalidRequest", "The request body is not form-encoded."))
			return
		}
	}
	for k, v := range r.URL.Query() {
		form[k] = append(form[k], v...)
	}
	action := form.Get("Action")
	region, authErr := verifySignature(r, body, time.Now())

	s.mu.Lock()
	hook, n := s.hooks[action], s.calls[action]+1
	s.mu.Unlock()
	if hook != nil {
		hook(n)
	}

	s.mu.Lock()
	s.calls[action]++
	s.requests = append(s.requests, Request{Action: action, Region: region, Form: form})
	requestID := s.requestID()
	resp, apiErr := s.dispatch(action, form, requestID, authErr)
	lose := false
	if apiErr == nil && s.lose[action] > 0 {
		s.lose[action]--
		lose = true
	}
	s.mu.Unlock()

	if lose {
		dropConnection(w)
		return
	}
	if apiErr != nil {
		writeError(w, requestID, apiErr)
		return
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	if err := xml.NewEncoder(&buf).Encode(resp); err != nil {
		writeError(w, requestID, errorf(http.StatusInternalServerError, "InternalError", "An internal error has occurred."))
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// dispatch runs under s.mu. The order of checks follows EC2: a request that
// fails authentication or is throttled does nothing.
func (s *Server) dispatch(action string, form url.Values, requestID string, authErr *apiError) (any, *apiError) {
	if authErr != nil {
		return nil, authErr
	}
	if s.throttle > 0 {
		s.throttle--
		return nil, errorf(http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded.")
	}
	if s.internal > 0 {
		s.internal--
		return nil, errorf(http.StatusInternalServerError, "InternalError", "An internal error has occurred.")
	}
	if action == "" {
		return nil, errorf(http.StatusBadRequest, "MissingAction", "The request must contain the parameter Action.")
	}
	h, ok := handlers[action]
	if !ok {
		return nil, errorf(http.StatusBadRequest, "InvalidAction", "The action %s is not valid for this web service.", action)
	}
	switch v := form.Get("Version"); v {
	case APIVersion:
	case "":
		return nil, errorf(http.StatusBadRequest, "MissingParameter", "The request must contain the parameter Version.")
	default:
		return nil, errorf(http.StatusBadRequest, "InvalidParameterValue", "Unsupported API version %q.", v)
	}
	if q := s.inject[action]; len(q) > 0 {
		s.inject[action] = q[1:]
		return nil, q[0]
	}
	return h(s, form, requestID)
}

func writeError(w http.ResponseWriter, requestID string, e *apiError) {
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	_ = xml.NewEncoder(&buf).Encode(errorResponse{
		Errors:    []errorEntry{{Code: e.Code, Message: e.Message}},
		RequestID: requestID,
	})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.Status)
	_, _ = w.Write(buf.Bytes())
}

// dropConnection closes the connection without writing a response.
func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(fmt.Sprintf("ec2test: hijack: %v", err)) // httptest's HTTP/1.1 server always supports it
	}
	_ = conn.Close()
}

// requestID returns a UUID-shaped request ID; runs under s.mu.
func (s *Server) requestID() string {
	s.seq++
	return fmt.Sprintf("ec2test0-0000-4000-8000-%012x", s.seq)
}

// nextID returns a new resource ID with the 17-hex-digit suffix EC2 uses;
// runs under s.mu.
func (s *Server) nextID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s%017x", prefix, uint64(0xf1ee7d0000000000)+s.seq)
}

func (in *Instance) clone() Instance {
	c := *in
	c.SecurityGroupIDs = slices.Clone(in.SecurityGroupIDs)
	c.Tags = cloneTags(in.Tags)
	c.Volumes = make([]Volume, len(in.Volumes))
	for i, v := range in.Volumes {
		v.Tags = cloneTags(v.Tags)
		c.Volumes[i] = v
	}
	return c
}

func cloneTags(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}
