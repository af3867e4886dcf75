package metrics

import (
	"context"

	"github.com/fleetd/fleetd/reconcile"
)

// Provider call names, the values of the call label.
const (
	CallList   = "list"
	CallCreate = "create"
	CallDelete = "delete"
)

// InstrumentProvider returns p with every call to the provider's API (List,
// Create, Delete) counted in fleetd_provider_calls_total{provider,call}, and
// the failed ones in fleetd_provider_call_errors_total. Name is a plain
// getter that reaches no provider and is not counted. The result forwards
// Close(ctx) to p when p has it, so a session-holding provider is still
// closed. A nil m returns p unchanged.
func InstrumentProvider(p reconcile.Provider, m *Metrics) reconcile.Provider {
	if m == nil || p == nil {
		return p
	}
	return &instrumented{p: p, m: m}
}

type instrumented struct {
	p reconcile.Provider
	m *Metrics
}

func (i *instrumented) count(call string, err error) {
	name := i.p.Name()
	i.m.providerCalls.WithLabelValues(name, call).Inc()
	if err != nil {
		i.m.providerErrs.WithLabelValues(name, call).Inc()
	}
}

func (i *instrumented) Name() string { return i.p.Name() }

func (i *instrumented) List(ctx context.Context) ([]reconcile.Machine, error) {
	ms, err := i.p.List(ctx)
	i.count(CallList, err)
	return ms, err
}

func (i *instrumented) Create(ctx context.Context, specs []reconcile.MachineSpec) ([]reconcile.Machine, error) {
	ms, err := i.p.Create(ctx, specs)
	i.count(CallCreate, err)
	return ms, err
}

func (i *instrumented) Delete(ctx context.Context, ids []string) error {
	err := i.p.Delete(ctx, ids)
	i.count(CallDelete, err)
	return err
}

// Close ends p's session when p has one (the vSphere provider does).
func (i *instrumented) Close(ctx context.Context) error {
	if c, ok := i.p.(interface{ Close(context.Context) error }); ok {
		return c.Close(ctx)
	}
	return nil
}

// Unwrap returns the instrumented provider.
func (i *instrumented) Unwrap() reconcile.Provider { return i.p }
