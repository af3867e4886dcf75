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

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// WorldFunc builds the live world of a fleet: its providers, and Rancher
// when fleet.yaml names it. The returned func ends provider sessions.
type WorldFunc func(ctx context.Context, fleet *schema.Fleet, log *slog.Logger) (reconcile.World, func(context.Context), error)

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
