package aws_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/providers/aws"
	"github.com/fleetd/fleetd/reconcile"
)

// TestCredentialsFromProfile resolves `credentials: env:NAME` through the
// SDK's shared config files: NAME holds a profile name, the profile holds
// the keys, and the server verifies the signature made with them.
func TestCredentialsFromProfile(t *testing.T) {
	srv := newServer(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "config")
	creds := filepath.Join(dir, "credentials")
	writeFile(t, config, "[profile fleet-eu]\nregion = us-west-2\n\n[profile wrong-keys]\nregion = us-west-2\n")
	writeFile(t, creds, "[fleet-eu]\naws_access_key_id = "+ec2test.AccessKeyID+"\naws_secret_access_key = "+ec2test.SecretAccessKey+
		"\n\n[wrong-keys]\naws_access_key_id = AKIAWRONGWRONGWRONG0\naws_secret_access_key = not-the-secret\n")
	t.Setenv("AWS_CONFIG_FILE", config)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true") // never reach for IMDS from a test

	newWith := func(ref string) (*aws.Provider, error) {
		cfg := testConfig(srv, "acme")
		cfg.Credentials = nil
		cfg.Spec.Credentials = ref
		return aws.New(context.Background(), cfg)
	}

	t.Run("the profile named by the variable signs the requests", func(t *testing.T) {
		t.Setenv("FLEETD_AWS_PROFILE_EU", "fleet-eu")
		p, err := newWith("env:FLEETD_AWS_PROFILE_EU")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.List(ctxT(t)); err != nil {
			t.Fatalf("List: %v", err)
		}
		reqs := srv.Requests("DescribeInstances")
		if got := reqs[len(reqs)-1].Region; got != testRegion {
			t.Errorf("signed for %q, want fleet.yaml's region %q over the profile's", got, testRegion)
		}
	})
	t.Run("wrong keys fail without retrying as transient", func(t *testing.T) {
		t.Setenv("FLEETD_AWS_PROFILE_EU", "wrong-keys")
		p, err := newWith("env:FLEETD_AWS_PROFILE_EU")
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.List(ctxT(t))
		if err == nil || !strings.Contains(err.Error(), "AuthFailure") {
			t.Fatalf("List: %v, want AuthFailure", err)
		}
		if reconcile.Classify(err) == reconcile.ReactRetry {
			t.Errorf("AuthFailure classified transient")
		}
	})
	for _, c := range []struct{ name, ref, env, wantErr string }{
		{"unset variable", "env:FLEETD_AWS_PROFILE_UNSET", "", "FLEETD_AWS_PROFILE_UNSET"},
		{"unknown profile", "env:FLEETD_AWS_PROFILE_EU", "no-such-profile", "no-such-profile"},
		{"not an env reference", "file:/etc/aws", "", "env:NAME"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("FLEETD_AWS_PROFILE_EU", c.env)
			_, err := newWith(c.ref)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("New: %v, want an error naming %q", err, c.wantErr)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
