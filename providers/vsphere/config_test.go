package vsphere

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/fleetd/fleetd/internal/testenv/vcsimserver"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

func TestResolveCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("VS_GOOD", "admin@vsphere.local:pa:ss")
	t.Setenv("VS_BAD", "no-colon-secret-value")
	t.Setenv("VS_EMPTY_PASS", "admin:")
	for _, tc := range []struct {
		name, ref, user, password string
		wantErr                   bool
	}{
		{name: "env", ref: "env:VS_GOOD", user: "admin@vsphere.local", password: "pa:ss"},
		{name: "file with newline", ref: "file:" + write("creds", "svc-fleetd:hunter2\n"), user: "svc-fleetd", password: "hunter2"},
		{name: "env unset", ref: "env:VS_UNSET_FOR_TEST", wantErr: true},
		{name: "env without colon", ref: "env:VS_BAD", wantErr: true},
		{name: "empty password", ref: "env:VS_EMPTY_PASS", wantErr: true},
		{name: "file missing", ref: "file:" + filepath.Join(dir, "missing"), wantErr: true},
		{name: "file without colon", ref: "file:" + write("bad", "no-colon-secret-value"), wantErr: true},
		{name: "unknown source", ref: "vault:secret/x", wantErr: true},
		{name: "empty", ref: "", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, password, err := ResolveCredentials(tc.ref)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error, got %q", user)
				}
				if strings.Contains(err.Error(), "secret-value") {
					t.Errorf("error reveals the content: %v", err)
				}
				return
			}
			if err != nil || user != tc.user || password != tc.password {
				t.Errorf("got %q %q %v, want %q %q", user, password, err, tc.user, tc.password)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := schema.VSphereProvider{
		Server: "https://vcenter.example/sdk", Credentials: "env:X", Datacenter: "DC", ComputeCluster: "C",
		Datastore: "ds", Network: "net", Folder: "fleetd", Template: "tmpl",
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no fleet", func(c *Config) { c.Fleet = "" }, "fleet name"},
		{"no template", func(c *Config) { c.Spec.Template = "" }, "template"},
		{"no placement", func(c *Config) { c.Spec.ComputeCluster = "" }, "computeCluster"},
		{"both placements", func(c *Config) { c.Spec.ResourcePool = "/DC/host/C/Resources" }, "both"},
		{"plain http", func(c *Config) { c.Spec.Server = "http://vcenter.example/sdk" }, "not https"},
		{"bad CA file", func(c *Config) { c.Spec.CAFile = "/nonexistent/ca.pem" }, "caFile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Fleet: "acme", Name: "dc1", Spec: good, Username: "u", Password: "p"}
			tc.mutate(&cfg)
			_, err := New(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error about %s", err, tc.want)
			}
			if reconcile.Classify(err) != reconcile.ReactStall {
				t.Errorf("classified %v, want stalled (a fleet.yaml change fixes it)", reconcile.Classify(err))
			}
		})
	}
}

func TestInsecureIsWarned(t *testing.T) {
	s := newSim(t, vcsimserver.Options{})
	cfg := s.config("acme")
	cfg.Spec.CAFile = ""
	cfg.Spec.Insecure = true
	logs := &logbuf.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	p := s.provider(t, cfg)
	if _, err := p.List(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "insecure") {
		t.Errorf("no warning about insecure: %s", logs)
	}
}

func TestMissingInventoryStalls(t *testing.T) {
	s := newSim(t, vcsimserver.Options{})
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
	}{
		{"datastore", func(c *Config) { c.Spec.Datastore = "no-such-ds" }},
		{"network", func(c *Config) { c.Spec.Network = "no-such-net" }},
		{"compute cluster", func(c *Config) { c.Spec.ComputeCluster = "no-such-cluster" }},
		{"template", func(c *Config) { c.Spec.Template = "no-such-template" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := s.config("acme")
			tc.mutate(&cfg)
			p := s.provider(t, cfg)
			_, err := p.Create(t.Context(), []reconcile.MachineSpec{spec("prod", "workers", 0)})
			if reconcile.Classify(err) != reconcile.ReactStall || !strings.Contains(err.Error(), "no-such") {
				t.Errorf("Create: %v (%v), want a stalled error naming the missing object", err, reconcile.Classify(err))
			}
		})
	}
	t.Run("template reported once for many machines", func(t *testing.T) {
		cfg := s.config("acme")
		cfg.Spec.Template = "no-such-template"
		p := s.provider(t, cfg)
		specs := []reconcile.MachineSpec{spec("prod", "workers", 0), spec("prod", "workers", 1), spec("prod", "workers", 2)}
		_, err := p.Create(t.Context(), specs)
		if err == nil || strings.Count(err.Error(), "no-such-template") != strings.Count(strings.SplitN(err.Error(), "\n", 2)[0], "no-such-template") {
			t.Errorf("Create: %v, want the missing template reported once", err)
		}
	})
	t.Run("sizes", func(t *testing.T) {
		p := s.provider(t, s.config("acme"))
		sp := spec("prod", "workers", 0)
		sp.Size.DiskGiB = 0 // keeps the template's disk
		if _, err := p.Create(t.Context(), []reconcile.MachineSpec{sp}); err != nil {
			t.Fatalf("Create keeping the template's disk: %v", err)
		}
		sp = spec("prod", "workers", 1)
		sp.Size.MemoryMiB = -1
		if _, err := p.Create(t.Context(), []reconcile.MachineSpec{sp}); reconcile.Classify(err) != reconcile.ReactStall {
			t.Errorf("Create with a negative size: %v, want stalled", err)
		}
	})
}

func TestRedactUserData(t *testing.T) {
	sp := spec("prod", "workers", 0)
	quoted := fmt.Errorf("invalid value %q for guestinfo.userdata", base64.StdEncoding.EncodeToString(sp.UserData))
	err := redact(wrap("clone", sp.Name, quoted), sp)
	if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(sp.UserData)) || !strings.Contains(err.Error(), sp.Name) {
		t.Errorf("redact: %v", err)
	}
	plain := wrap("clone", sp.Name, errors.New("boom"))
	if redact(plain, sp) != plain {
		t.Errorf("redact changed an error without user data")
	}
}

func TestResourcePoolPlacement(t *testing.T) {
	s := newSim(t, vcsimserver.Options{})
	cfg := s.config("acme")
	cfg.Spec.ComputeCluster = ""
	cfg.Spec.ResourcePool = vcsimserver.ResourcePool
	p := s.provider(t, cfg)
	ms, err := p.Create(t.Context(), []reconcile.MachineSpec{spec("prod", "workers", 0)})
	if err != nil {
		t.Fatal(err)
	}
	var o mo.VirtualMachine
	if err := property.DefaultCollector(s.admin).RetrieveOne(t.Context(), types.ManagedObjectReference{Type: "VirtualMachine", Value: ms[0].ID}, []string{"resourcePool"}, &o); err != nil {
		t.Fatal(err)
	}
	pool, err := find.NewFinder(s.admin, true).ResourcePool(t.Context(), vcsimserver.ResourcePool)
	if err != nil {
		t.Fatal(err)
	}
	if o.ResourcePool == nil || *o.ResourcePool != pool.Reference() {
		t.Errorf("VM in pool %v, want %v", o.ResourcePool, pool.Reference())
	}
}
