package vsphere

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/fleetd/fleetd/schema"
)

// DefaultMaxInFlight is the number of vCenter tasks a provider runs at once
// when Config.MaxInFlight is zero.
const DefaultMaxInFlight = 8

// DefaultPageSize is the number of VMs per property-collector page when
// Config.PageSize is zero.
const DefaultPageSize = 1000

// Config configures a Provider.
type Config struct {
	// Fleet is the fleet's name; it marks every VM the provider creates.
	Fleet string
	// Name is the provider's name in fleet.yaml.
	Name string
	// Spec is the provider's vsphere block of fleet.yaml.
	Spec schema.VSphereProvider

	// Username and Password log in to vCenter. When Username is empty they
	// are resolved from Spec.Credentials with ResolveCredentials.
	Username string
	Password string

	// MaxInFlight bounds the vCenter tasks (clone, power-off, destroy) the
	// provider runs at once; zero means DefaultMaxInFlight.
	MaxInFlight int
	// PageSize is the number of VMs per property-collector page of List;
	// zero means DefaultPageSize.
	PageSize int
	// Logger receives operator logs; nil means slog.Default().
	Logger *slog.Logger
	// WrapTransport, when set, wraps the HTTP transport to vCenter (for
	// metrics and tests, for example to count round trips). Optional.
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

func (c *Config) validate() error {
	var errs []error
	if c.Fleet == "" {
		errs = append(errs, errors.New("fleet name is empty"))
	}
	if c.Name == "" {
		errs = append(errs, errors.New("provider name is empty"))
	}
	s := c.Spec
	for _, f := range []struct{ name, v string }{
		{"server", s.Server}, {"datacenter", s.Datacenter}, {"datastore", s.Datastore},
		{"network", s.Network}, {"folder", s.Folder}, {"template", s.Template},
	} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s is empty", f.name))
		}
	}
	if s.ComputeCluster == "" && s.ResourcePool == "" {
		errs = append(errs, errors.New("neither computeCluster nor resourcePool is set"))
	}
	if s.ComputeCluster != "" && s.ResourcePool != "" {
		errs = append(errs, errors.New("both computeCluster and resourcePool are set"))
	}
	if c.MaxInFlight < 0 || c.PageSize < 0 {
		errs = append(errs, errors.New("maxInFlight and pageSize must not be negative"))
	}
	return errors.Join(errs...)
}

// ResolveCredentials reads a user:password pair from a credentials reference
// of fleet.yaml: "env:NAME" (the variable holds user:password) or
// "file:/path" (the file holds user:password, surrounding white space
// ignored). The password may contain colons; the user may not. Errors name
// the reference and never its content.
func ResolveCredentials(ref string) (user, password string, err error) {
	kind, arg, ok := strings.Cut(ref, ":")
	if !ok || arg == "" {
		return "", "", fmt.Errorf("vsphere: credentials %q: want env:NAME or file:/path", ref)
	}
	var raw string
	switch kind {
	case "env":
		v, set := os.LookupEnv(arg)
		if !set {
			return "", "", fmt.Errorf("vsphere: credentials %s: variable %s is not set", ref, arg)
		}
		raw = v
	case "file":
		b, err := os.ReadFile(arg)
		if err != nil {
			// The path error holds only the path, never the content.
			return "", "", fmt.Errorf("vsphere: credentials %s: %w", ref, err)
		}
		raw = string(b)
	default:
		return "", "", fmt.Errorf("vsphere: credentials %q: unknown source %q, want env or file", ref, kind)
	}
	user, password, ok = strings.Cut(strings.TrimSpace(raw), ":")
	if !ok || user == "" || password == "" {
		return "", "", fmt.Errorf("vsphere: credentials %s: want user:password", ref)
	}
	return user, password, nil
}
