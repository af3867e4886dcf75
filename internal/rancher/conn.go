package rancher

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"k8s.io/client-go/rest"

	"github.com/fleetd/fleetd/schema"
)

// LocalCluster is the ID of Rancher's own (local) cluster in its /k8s/clusters/ path.
const LocalCluster = "local"

// Conn is how fleetd reaches Rancher: its URL, the API token and the CA that
// signed its certificate. The token is a secret: Conn never prints it.
type Conn struct {
	URL    string
	token  string
	CAData []byte
	// WrapTransport, when set, wraps the HTTP transport of every client
	// (tests count requests with it).
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// Connect resolves the token reference (env:NAME or file:/path) and the CA
// file of spec. caData, when not nil, is used instead of spec.CAFile.
func Connect(spec schema.Rancher, caData []byte) (*Conn, error) {
	u, err := url.Parse(spec.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("rancher: url %q: want https://host[:port]", spec.URL)
	}
	tok, err := ResolveToken(spec.Token)
	if err != nil {
		return nil, err
	}
	if caData == nil && spec.CAFile != "" {
		caData, err = os.ReadFile(spec.CAFile)
		if err != nil {
			return nil, fmt.Errorf("rancher: caFile: %w", err)
		}
	}
	return &Conn{URL: strings.TrimSuffix(spec.URL, "/"), token: tok, CAData: caData}, nil
}

// NewConn returns a Conn with a token already resolved (tests, the demo).
func NewConn(rancherURL, token string, caData []byte) *Conn {
	return &Conn{URL: strings.TrimSuffix(rancherURL, "/"), token: token, CAData: caData}
}

// ResolveToken reads a Rancher API token from env:NAME or file:/abs/path.
// Errors name the reference, never the token.
func ResolveToken(ref string) (string, error) {
	kind, arg, ok := strings.Cut(ref, ":")
	if !ok || arg == "" {
		return "", fmt.Errorf("rancher: token %q: want env:NAME or file:/path", ref)
	}
	var tok string
	switch kind {
	case "env":
		v, ok := os.LookupEnv(arg)
		if !ok {
			return "", fmt.Errorf("rancher: token %s: variable %s is not set", ref, arg)
		}
		tok = v
	case "file":
		b, err := os.ReadFile(arg)
		if err != nil {
			return "", fmt.Errorf("rancher: token %s: %w", ref, err)
		}
		tok = string(b)
	default:
		return "", fmt.Errorf("rancher: token %q: unknown source %q, want env or file", ref, kind)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fmt.Errorf("rancher: token %s is empty", ref)
	}
	return tok, nil
}

// Token returns the API token, for code that must send it (never log it).
func (c *Conn) Token() string { return c.token }

// RESTConfig returns the client configuration for a cluster's Kubernetes API
// through Rancher: <url>/k8s/clusters/<id>, the token as bearer token.
func (c *Conn) RESTConfig(clusterID string) *rest.Config {
	cfg := &rest.Config{
		Host:        c.URL + "/k8s/clusters/" + clusterID,
		BearerToken: c.token,
		UserAgent:   "fleetd",
		QPS:         50,
		Burst:       100,
	}
	cfg.TLSClientConfig.CAData = c.CAData
	if c.WrapTransport != nil {
		cfg.WrapTransport = c.WrapTransport
	}
	return cfg
}

// String describes the connection without the token.
func (c *Conn) String() string { return "rancher " + c.URL }
