package vsphere

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

// TestVcsimLite talks to the vcsim-lite program (its Main, in-process) the
// way fleetd talks to a vCenter: HTTPS verified against a CA file, a login
// with credentials from an env: reference, and the whole machine life cycle.
func TestVcsimLite(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "vcsim-ca.pem")
	ctx, cancel := context.WithCancel(context.Background())
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- vcsimserver.Main(ctx, []string{
			"-listen", "127.0.0.1:0", "-ca-file", caFile, "-username", "fleetd", "-password", "pa:ss:word",
		}, w, io.Discard)
		_ = w.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("vcsim-lite: %v", err)
		}
	})
	env := map[string]string{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		env[k] = v
		if k == "VCSIM_TEMPLATE" {
			break
		}
	}
	if env["VCSIM_URL"] == "" || env["VCSIM_CA_FILE"] != caFile {
		t.Fatalf("vcsim-lite printed %v", env)
	}
	t.Setenv("FLEETD_TEST_VSPHERE_CREDS", "fleetd:pa:ss:word")
	logs := &logbuf.Buffer{}
	cfg := Config{
		Fleet: "acme",
		Name:  "dc1",
		Spec: schema.VSphereProvider{
			Server:         env["VCSIM_URL"],
			Credentials:    "env:FLEETD_TEST_VSPHERE_CREDS",
			Datacenter:     env["VCSIM_DATACENTER"],
			ComputeCluster: env["VCSIM_COMPUTE_CLUSTER"],
			Datastore:      env["VCSIM_DATASTORE"],
			Network:        env["VCSIM_NETWORK"],
			Folder:         "fleetd",
			Template:       env["VCSIM_TEMPLATE"],
			CAFile:         env["VCSIM_CA_FILE"],
		},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}

	t.Run("UntrustedCertificateIsRefused", func(t *testing.T) {
		c := cfg
		c.Spec.CAFile = ""
		p, err := New(t.Context(), c)
		if err != nil {
			t.Fatalf("New makes no request, yet: %v", err)
		}
		_, err = p.List(t.Context())
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) {
			t.Fatalf("New without the CA: %v, want an unknown authority", err)
		}
		if reconcile.Classify(err) == reconcile.ReactRetry {
			t.Errorf("an untrusted certificate is marked transient")
		}
	})
	t.Run("WrongPasswordIsRefused", func(t *testing.T) {
		c := cfg
		c.Username, c.Password = "fleetd", "wrong-password-value"
		p, err := New(t.Context(), c)
		if err != nil {
			t.Fatalf("New makes no request, yet: %v", err)
		}
		_, err = p.List(t.Context())
		if err == nil || !strings.Contains(err.Error(), "login") {
			t.Fatalf("New with a wrong password: %v", err)
		}
		if strings.Contains(err.Error(), "wrong-password-value") {
			t.Errorf("error reveals the password: %v", err)
		}
	})
	t.Run("Lifecycle", func(t *testing.T) {
		p, err := New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(context.Background())
		specs := []reconcile.MachineSpec{spec("prod", "control", 0), spec("prod", "workers", 0), spec("prod", "workers", 1)}
		ms, err := p.Create(t.Context(), specs)
		if err != nil || len(ms) != 3 {
			t.Fatalf("Create: %v", err)
		}
		listed, err := p.List(t.Context())
		if err != nil || len(listed) != 3 {
			t.Fatalf("List: %d machines, %v", len(listed), err)
		}
		for i, m := range listed {
			if m.Name != specs[i].Name || m.Pool != specs[i].Pool || m.State != reconcile.MachineRunning || m.CreatedAt.IsZero() {
				t.Errorf("List[%d] = %+v", i, m)
			}
		}
		if err := p.Delete(t.Context(), ids(ms)); err != nil {
			t.Fatal(err)
		}
		if listed, err := p.List(t.Context()); err != nil || len(listed) != 0 {
			t.Fatalf("List after Delete: %d machines, %v", len(listed), err)
		}
	})
	if strings.Contains(logs.String(), "pa:ss:word") || strings.Contains(logs.String(), "sekrit") {
		t.Errorf("logs reveal a secret")
	}
}

func ids(ms []reconcile.Machine) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}
