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
//
// Each page is turned into machines as it arrives, so the SDK's instance
// records (most of their fields unused here) of one page at most are alive
// at a time: at 66,000 machines, holding every page's records until the end
// was most of the daemon's peak memory.
func (p *Provider) List(ctx context.Context) ([]reconcile.Machine, error) {
	var out []reconcile.Machine
	var in interner
	err := p.describePages(ctx, func(page *ec2.DescribeInstancesOutput) {
		for r := range page.Reservations {
			insts := page.Reservations[r].Instances
			for i := range insts {
				// The filter already asked for the fleet's tag; checking
				// it again keeps a lax endpoint from handing out foreign
				// instances.
				if p.owned(&insts[i]) {
					out = append(out, p.machineInterned(&insts[i], &in))
				}
			}
		}
	}, p.fleetFilter(), p.providerFilter(), stateFilter())
	if err != nil {
		return nil, fail("list", "instances", err)
	}
	sortMachines(out)
	return slices.Clip(out), nil
}

// describe pages through DescribeInstances with filters and returns the
// instances of every page.
func (p *Provider) describe(ctx context.Context, filters ...types.Filter) ([]types.Instance, error) {
	var out []types.Instance
	err := p.describePages(ctx, func(page *ec2.DescribeInstancesOutput) {
		for _, r := range page.Reservations {
			out = append(out, r.Instances...)
		}
	}, filters...)
	return out, err
}

// describePages pages through DescribeInstances with filters, handing each
// page to fn.
func (p *Provider) describePages(ctx context.Context, fn func(*ec2.DescribeInstancesOutput), filters ...types.Filter) error {
	pages := ec2.NewDescribeInstancesPaginator(p.api, &ec2.DescribeInstancesInput{
		Filters:    filters,
		MaxResults: sdkaws.Int32(pageSize),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		fn(page)
	}
	return nil
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
func (p *Provider) owned(in *types.Instance) bool {
	fleet, ok := tagValue(in.Tags, TagFleet)
	prov, provOK := tagValue(in.Tags, TagProvider)
	return ok && fleet == p.fleet && provOK && prov == p.name
}

// machine maps an instance onto a reconcile.Machine.
func (p *Provider) machine(in *types.Instance) reconcile.Machine {
	return p.machineInterned(in, nil)
}

// machineInterned is machine, with the values that machines share (cluster,
// team, pool, template hash) stored once through in when it is not nil.
func (p *Provider) machineInterned(in *types.Instance, intern *interner) reconcile.Machine {
	m := reconcile.Machine{
		ID:        sdkaws.ToString(in.InstanceId),
		Provider:  p.name,
		State:     machineState(in.State),
		Address:   sdkaws.ToString(in.PrivateIpAddress),
		CreatedAt: sdkaws.ToTime(in.LaunchTime),
	}
	// Tags are read in order, the last of a repeated key winning, as a map
	// of them would.
	for _, t := range in.Tags {
		v := sdkaws.ToString(t.Value)
		switch sdkaws.ToString(t.Key) {
		case TagName:
			m.Name = v
		case TagCluster:
			m.Cluster = intern.get(v)
		case TagTeam:
			m.Team = intern.get(v)
		case TagPool:
			m.Pool = intern.get(v)
		case TagTemplateHash:
			m.TemplateHash = intern.get(v)
		}
	}
	if m.Name == "" {
		// An owned instance whose Name tag was removed still has to show up,
		// so the reconciler can see it and remove it.
		m.Name = m.ID
	}
	return m
}

// interner hands out one copy of each string it is given, so the machines
// of one list share their cluster, team, pool and template hash values. A
// nil interner returns its input.
type interner struct{ seen map[string]string }

func (in *interner) get(s string) string {
	if in == nil {
		return s
	}
	if v, ok := in.seen[s]; ok {
		return v
	}
	if in.seen == nil {
		in.seen = map[string]string{}
	}
	in.seen[s] = s
	return s
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

func isGone(in *types.Instance) bool {
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
