package rancher

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fleetd/fleetd/internal/testenv/kubetest"
	"github.com/fleetd/fleetd/internal/testenv/rancherstandin"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"

	"github.com/fleetd/fleetd/internal/testenv/logbuf"
)

// One apiserver and one Rancher stand-in serve every test of the package;
// tests use cluster names of their own.
var (
	shared  *kubetest.Shared
	standin *rancherstandin.Rancher
)

func TestMain(m *testing.M) {
	kubetest.Main(m, &shared, func(env *kubetest.Env) (func(), error) {
		rs, err := rancherstandin.Start(context.Background(), env, rancherstandin.Options{})
		if err != nil {
			return nil, err
		}
		standin = rs
		return rs.Stop, nil
	})
}

// needRancher skips (plain go test without binaries) or returns the stand-in.
func needRancher(t *testing.T) *rancherstandin.Rancher {
	t.Helper()
	shared.Need(t)
	return standin
}

func newRegistry(t *testing.T, namespace string, logs *logbuf.Buffer) *Registry {
	t.Helper()
	rs := needRancher(t)
	var log *slog.Logger
	if logs != nil {
		log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	r, err := NewWithConn(context.Background(), Config{
		Fleet:  "acme",
		Spec:   schema.Rancher{URL: rs.URL, AuthProvider: "openldap", Namespace: namespace},
		Logger: log,
	}, NewConn(rs.URL, rs.Token, rs.CAPEM))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitCluster polls Clusters until cluster satisfies ok.
func waitCluster(t *testing.T, r *Registry, cluster string, ok func(reconcile.RancherCluster) bool) reconcile.RancherCluster {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	var last []reconcile.RancherCluster
	for time.Now().Before(deadline) {
		cs, err := r.Clusters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last = cs
		for _, c := range cs {
			if c.Name == cluster && ok(c) {
				return c
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("cluster %s never reached the wanted state; last observed %+v", cluster, last)
	return reconcile.RancherCluster{}
}

func hasID(c reconcile.RancherCluster) bool { return c.ID != "" }

func contains(s, sub string) bool { return sub != "" && strings.Contains(s, sub) }
