package fleetsync

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/fleetd/fleetd/internal/kube"
	"github.com/fleetd/fleetd/internal/rancher"
	"github.com/fleetd/fleetd/providers/aws"
	"github.com/fleetd/fleetd/providers/vsphere"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// WorldFunc builds the live world of a fleet: its providers, and Rancher
// when fleet.yaml names it. The returned func ends provider sessions.
type WorldFunc func(ctx context.Context, fleet *schema.Fleet, log *slog.Logger) (reconcile.World, func(context.Context), error)

// LiveWorld builds the real providers (AWS through aws-sdk-go-v2, vSphere
// through govmomi) with credentials from where fleet.yaml says, and, for a
// fleet with a rancher block, the Rancher registry and the downstream
// clusters' nodes through client-go. Building makes no request: an
// unreachable Rancher or provider shows in the first observation. A
// provider that cannot be built (its credentials cannot be read, its block
// is unusable) is in the world as one whose every call fails with why, so
// that it holds back its own clusters only.
func LiveWorld(ctx context.Context, fleet *schema.Fleet, log *slog.Logger) (reconcile.World, func(context.Context), error) {
	w := reconcile.World{Providers: map[string]reconcile.Provider{}}
	if r := fleet.Spec.Rancher; r != nil {
		reg, err := rancher.New(ctx, rancher.Config{Fleet: fleet.Spec.Name, Spec: *r, Logger: log})
		if err != nil {
			return reconcile.World{}, nil, reconcile.Stalled(err)
		}
		nodes, err := kube.New(ctx, kube.Config{Spec: *r, Logger: log})
		if err != nil {
			return reconcile.World{}, nil, reconcile.Stalled(err)
		}
		w.Registry, w.Nodes = reg, nodes
	}
	closeAll := func(ctx context.Context) { closeProviders(ctx, w.Providers, log) }
	for _, p := range fleet.Spec.Providers {
		var (
			prov reconcile.Provider
			err  error
		)
		switch p.Type {
		case schema.ProviderAWS:
			prov, err = aws.New(ctx, aws.Config{Fleet: fleet.Spec.Name, Name: p.Name, Spec: *p.AWS, Logger: log})
		case schema.ProviderVSphere:
			prov, err = vsphere.New(ctx, vsphere.Config{Fleet: fleet.Spec.Name, Name: p.Name, Spec: *p.VSphere, Logger: log})
		default:
			err = reconcile.Stalled(fmt.Errorf("unknown provider type %q", p.Type))
		}
		if err != nil {
			err = fmt.Errorf("provider %s: %w", p.Name, err)
			log.Warn("Provider cannot be built: its clusters are left alone", "provider", p.Name, "error", err.Error())
			prov = &unavailable{name: p.Name, err: err}
		}
		w.Providers[p.Name] = prov
	}
	return w, closeAll, nil
}

// unavailable is a provider that could not be built: every call fails with
// why, so Observe records it and the planner leaves its clusters as they are.
type unavailable struct {
	name string
	err  error
}

func (u *unavailable) Name() string { return u.name }
func (u *unavailable) List(context.Context) ([]reconcile.Machine, error) {
	return nil, u.err
}
func (u *unavailable) Create(context.Context, []reconcile.MachineSpec) ([]reconcile.Machine, error) {
	return nil, u.err
}
func (u *unavailable) Delete(context.Context, []string) error { return u.err }

// closer is a provider that holds a session to end (vCenter).
type closer interface {
	Close(ctx context.Context) error
}

func closeProviders(ctx context.Context, providers map[string]reconcile.Provider, log *slog.Logger) {
	for name, p := range providers {
		if c, ok := p.(closer); ok {
			if err := c.Close(context.WithoutCancel(ctx)); err != nil {
				log.Warn("Cannot end provider session", "provider", name, "error", err)
			}
		}
	}
}

// worldKey digests what the live world is built from: a changed provider or
// Rancher block rebuilds it, and so do changed credentials (the content of
// every credentials file and variable that fleet.yaml names). A peer that
// refused the credentials is asked again only by a world built anew: so a
// refusal costs one login, not one per sync, until someone fixes it.
func worldKey(f *schema.Fleet) string {
	var refs []string
	for _, p := range f.Spec.Providers {
		switch {
		case p.AWS != nil:
			// The SDK reads profiles and keys from its shared files.
			refs = append(refs, p.AWS.Credentials, "file:"+awsSharedFile("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
				"file:"+awsSharedFile("AWS_CONFIG_FILE", "config"))
		case p.VSphere != nil:
			refs = append(refs, p.VSphere.Credentials)
		}
	}
	if r := f.Spec.Rancher; r != nil {
		refs = append(refs, r.Token, "file:"+r.CAFile)
	}
	b, _ := json.Marshal(struct {
		Name        string
		Providers   []schema.Provider
		Rancher     *schema.Rancher
		Credentials []string
	}{f.Spec.Name, f.Spec.Providers, f.Spec.Rancher, credentialDigests(refs)})
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// awsSharedFile is the AWS SDK's shared file: where env says, else
// ~/.aws/name.
func awsSharedFile(env, name string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".aws", name)
}

// credentialDigests digests what each env:NAME or file:/path reference holds
// now, or that it cannot be read; the digests never leave the key.
func credentialDigests(refs []string) []string {
	out := make([]string, 0, len(refs))
	for _, ref := range refs {
		kind, arg, _ := strings.Cut(ref, ":")
		var content []byte
		switch {
		case arg == "":
		case kind == "env":
			v, ok := os.LookupEnv(arg)
			content = fmt.Appendf(nil, "%t:%s", ok, v)
		case kind == "file":
			b, err := os.ReadFile(arg)
			if err != nil {
				content = []byte("unreadable: " + err.Error())
			} else {
				content = append([]byte("content:"), b...)
			}
		}
		out = append(out, fmt.Sprintf("%x", sha256.Sum256(content)))
	}
	return out
}
