package aws

import (
	"cmp"
	"context"
	"slices"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/fleetd/fleetd/reconcile"
)

// pageSize is DescribeInstances' MaxResults: the largest EC2 allows, so the
// whole fleet takes a handful of calls.
const pageSize = 1000

// maxFilterValues bounds the values of one describe filter; EC2 rejects
// requests with too many, so longer lists are split into several queries.
const maxFilterValues = 200

// liveStates are the instance states that count as an existing machine;
// terminated instances stay visible for a while and are not machines.
var liveStates = []string{
	string(types.InstanceStateNamePending),
	string(types.InstanceStateNameRunning),
	string(types.InstanceStateNameStopping),
	string(types.InstanceStateNameStopped),
	string(types.InstanceStateNameShuttingDown),
}

// List returns every live instance that carries the fleet's tag, sorted by
// name, from one paginated DescribeInstances query for the whole fleet.
func (p *Provider) List(ctx context.Context) ([]reconcile.Machine, error) {
	insts, err := p.describe(ctx, p.fleetFilter(), p.providerFilter(), stateFilter())
	if err != nil {
		return nil, fail("list", "instances", err)
	}
	out := make([]reconcile.Machine, 0, len(insts))
	for _, in := range insts {
		// The filter already asked for the fleet's tag; checking it again
		// keeps a lax endpoint from handing out foreign instances.
		if p.owned(in) {
			out = append(out, p.machine(in))
		}
	}
	sortMachines(out)
	return out, nil
}

// describe pages through DescribeInstances with filters and returns the
// instances of every page.
func (p *Provider) describe(ctx context.Context, filters ...types.Filter) ([]types.Instance, error) {
	pages := ec2.NewDescribeInstancesPaginator(p.api, &ec2.DescribeInstancesInput{
		Filters:    filters,
		MaxResults: sdkaws.Int32(pageSize),
	})
	var out []types.Instance
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Reservations {
			out = append(out, r.Instances...)
		}
	}
	return out, nil
}

// describeEach describes the instances whose filter name takes one of
// values, maxFilterValues at a time.
func (p *Provider) describeEach(ctx context.Context, name string, values []string, filters ...types.Filter) ([]types.Instance, error) {
	var out []types.Instance
	for chunk := range slices.Chunk(values, maxFilterValues) {
		insts, err := p.describe(ctx, append(slices.Clone(filters), types.Filter{Name: sdkaws.String(name), Values: chunk})...)
		if err != nil {
			return nil, err
		}
		out = append(out, insts...)
	}
	return out, nil
}

func (p *Provider) fleetFilter() types.Filter {
	return types.Filter{Name: sdkaws.String("tag:" + TagFleet), Values: []string{p.fleet}}
}

func (p *Provider) providerFilter() types.Filter {
	return types.Filter{Name: sdkaws.String("tag:" + TagProvider), Values: []string{p.name}}
}

func stateFilter() types.Filter {
	return types.Filter{Name: sdkaws.String("instance-state-name"), Values: liveStates}
}

// owned reports whether in carries the fleet's ownership mark.
func (p *Provider) owned(in types.Instance) bool {
	fleet, ok := tagValue(in.Tags, TagFleet)
	prov, provOK := tagValue(in.Tags, TagProvider)
	return ok && fleet == p.fleet && provOK && prov == p.name
}

// machine maps an instance onto a reconcile.Machine.
func (p *Provider) machine(in types.Instance) reconcile.Machine {
	tags := map[string]string{}
	for _, t := range in.Tags {
		tags[sdkaws.ToString(t.Key)] = sdkaws.ToString(t.Value)
	}
	m := reconcile.Machine{
		ID:           sdkaws.ToString(in.InstanceId),
		Name:         tags[TagName],
		Provider:     p.name,
		Cluster:      tags[TagCluster],
		Team:         tags[TagTeam],
		Pool:         tags[TagPool],
		TemplateHash: tags[TagTemplateHash],
		State:        machineState(in.State),
		Address:      sdkaws.ToString(in.PrivateIpAddress),
		CreatedAt:    sdkaws.ToTime(in.LaunchTime),
	}
	if m.Name == "" {
		// An owned instance whose Name tag was removed still has to show up,
		// so the reconciler can see it and remove it.
		m.Name = m.ID
	}
	return m
}

// machineState maps EC2's instance states onto the reconciler's.
func machineState(s *types.InstanceState) reconcile.MachineState {
	if s == nil {
		return reconcile.MachinePending
	}
	switch s.Name {
	case types.InstanceStateNameRunning:
		return reconcile.MachineRunning
	case types.InstanceStateNameStopping, types.InstanceStateNameStopped:
		return reconcile.MachineStopped
	case types.InstanceStateNameShuttingDown, types.InstanceStateNameTerminated:
		return reconcile.MachineDeleting
	default:
		return reconcile.MachinePending
	}
}

func isGone(in types.Instance) bool {
	return in.State != nil && in.State.Name == types.InstanceStateNameTerminated
}

func tagValue(tags []types.Tag, key string) (string, bool) {
	for _, t := range tags {
		if sdkaws.ToString(t.Key) == key {
			return sdkaws.ToString(t.Value), true
		}
	}
	return "", false
}

func sortMachines(ms []reconcile.Machine) {
	slices.SortFunc(ms, func(a, b reconcile.Machine) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
}
