package providertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// endpoint is an in-memory cloud: the reference the suite is checked
// against, and an example of a harness.
type endpoint struct {
	mu   sync.Mutex
	next int
	vms  map[string]*vm // by ID
}

type vm struct {
	fleet string // empty: made outside fleetd
	m     reconcile.Machine
}

type memProvider struct {
	e     *endpoint
	fleet string
}

func (p *memProvider) Name() string { return "mem" }

func (p *memProvider) List(context.Context) ([]reconcile.Machine, error) {
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	out := []reconcile.Machine{}
	for _, v := range p.e.vms {
		if v.fleet == p.fleet {
			out = append(out, v.m)
		}
	}
	slices.SortFunc(out, func(a, b reconcile.Machine) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (p *memProvider) Create(_ context.Context, specs []reconcile.MachineSpec) ([]reconcile.Machine, error) {
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	out := make([]reconcile.Machine, 0, len(specs))
outer:
	for _, s := range specs {
		for _, v := range p.e.vms {
			if v.fleet == p.fleet && v.m.Name == s.Name {
				out = append(out, v.m)
				continue outer
			}
		}
		p.e.next++
		m := reconcile.Machine{
			ID: fmt.Sprintf("i-%d", p.e.next), Name: s.Name, Provider: "mem", Cluster: s.Cluster, Team: s.Team,
			Pool: s.Pool, TemplateHash: s.TemplateHash, State: reconcile.MachinePending, CreatedAt: time.Now(),
		}
		p.e.vms[m.ID] = &vm{fleet: p.fleet, m: m}
		out = append(out, m)
	}
	return out, nil
}

func (p *memProvider) Delete(_ context.Context, ids []string) error {
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	var errs []error
	for _, id := range ids {
		v, ok := p.e.vms[id]
		switch {
		case !ok:
		case v.fleet != p.fleet:
			errs = append(errs, fmt.Errorf("mem: %s is not fleet %s's", id, p.fleet))
		default:
			delete(p.e.vms, id)
		}
	}
	return errors.Join(errs...)
}

func TestSuiteOnMemoryProvider(t *testing.T) {
	e := &endpoint{vms: map[string]*vm{}}
	Run(t, Harness{
		NewProvider: func(t *testing.T, fleet string) reconcile.Provider { return &memProvider{e: e, fleet: fleet} },
		CreateForeign: func(t *testing.T, name string) string {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.next++
			id := fmt.Sprintf("i-%d", e.next)
			e.vms[id] = &vm{m: reconcile.Machine{ID: id, Name: name}}
			return id
		},
		ForeignExists: func(t *testing.T, id string) bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			_, ok := e.vms[id]
			return ok
		},
		Size: schema.MachineSize{InstanceType: "m.small"},
	})
}
