package aws

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/fleetd/fleetd/reconcile"
)

// maxVolumeGiB is the largest EBS volume (gp3: 64 TiB).
const maxVolumeGiB = 65536

// maxTokenHops bounds how often one Create call derives a further client
// token for a machine (see launch).
const maxTokenHops = 8

// Create launches one instance per spec that the fleet does not already have
// by name, with RunInstances (MinCount = MaxCount = 1), at most Concurrency
// calls at a time.
//
// It is idempotent: a machine of that name that the fleet owns is returned
// as it is, and each launch carries a client token derived from the fleet,
// cluster and machine name, so a launch retried after a lost response (by
// the SDK or by a later sync, even before DescribeInstances shows the first
// attempt) returns the instance it made instead of a twin.
//
// It returns the machines that exist afterwards in the order of specs; on a
// partial failure, those that exist together with the joined errors. No
// error or log carries a machine's user data.
func (p *Provider) Create(ctx context.Context, specs []reconcile.MachineSpec) ([]reconcile.Machine, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	if err := p.checkSpecs(specs); err != nil {
		return nil, err
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	existing, err := p.findByName(ctx, names)
	if err != nil {
		return nil, fail("create", "machines: look up existing names", err)
	}

	results := make([]*reconcile.Machine, len(specs))
	errs := make([]error, len(specs))
	imageErrs := map[string]error{}
	sem := make(chan struct{}, p.concurrency)
	var wg sync.WaitGroup
	for i, spec := range specs {
		if m, ok := existing[spec.Name]; ok {
			if m.Cluster != spec.Cluster {
				errs[i] = fmt.Errorf("aws: create %s: the name is taken by an instance of cluster %q (%s)", spec.Name, m.Cluster, m.ID)
				continue
			}
			p.logger(ctx).DebugContext(ctx, "Machine exists", "machine", spec.Name, "instance", m.ID)
			results[i] = &m
			continue
		}
		if spec.Size.DiskGiB > 0 {
			// Resolved here, one image at a time, so that parallel launches
			// find it cached.
			img := spec.Size.Image
			if _, done := imageErrs[img]; !done {
				_, imageErrs[img] = p.rootDevice(ctx, img)
			}
			if err := imageErrs[img]; err != nil {
				errs[i] = fail("create", spec.Name+": root device of image "+img, err)
				continue
			}
		}
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = fmt.Errorf("aws: create %s: %w", spec.Name, ctx.Err())
				return
			}
			defer func() { <-sem }()
			m, err := p.launch(ctx, spec)
			if err != nil {
				errs[i] = err
				return
			}
			results[i] = &m
		})
	}
	wg.Wait()

	out := make([]reconcile.Machine, 0, len(specs))
	for _, m := range results {
		if m != nil {
			out = append(out, *m)
		}
	}
	return out, errors.Join(errs...)
}

// checkSpecs rejects specs that no retry can launch.
func (p *Provider) checkSpecs(specs []reconcile.MachineSpec) error {
	var errs []error
	seen := map[string]bool{}
	for _, s := range specs {
		switch {
		case s.Name == "":
			errs = append(errs, errors.New("aws: create: a machine spec has no name"))
		case seen[s.Name]:
			errs = append(errs, fmt.Errorf("aws: create %s: the name appears twice", s.Name))
		case s.Cluster == "":
			errs = append(errs, fmt.Errorf("aws: create %s: no cluster", s.Name))
		case s.Size.Image == "":
			errs = append(errs, reconcile.Stalled(fmt.Errorf("aws: create %s: no image: set the provider's image or the size's image", s.Name)))
		case s.Size.InstanceType == "":
			errs = append(errs, reconcile.Stalled(fmt.Errorf("aws: create %s: the size has no instanceType", s.Name)))
		case s.Size.DiskGiB < 0 || s.Size.DiskGiB > maxVolumeGiB:
			errs = append(errs, reconcile.Stalled(fmt.Errorf("aws: create %s: diskGiB %d: want 0 (the image's size) up to %d", s.Name, s.Size.DiskGiB, maxVolumeGiB)))
		}
		seen[s.Name] = true
	}
	return errors.Join(errs...)
}

// findByName returns the fleet's live machines with the given names. Should
// EC2 hold two (made outside fleetd's client tokens), the oldest wins.
func (p *Provider) findByName(ctx context.Context, names []string) (map[string]reconcile.Machine, error) {
	insts, err := p.describeEach(ctx, "tag:"+TagName, names, p.fleetFilter(), p.providerFilter(), stateFilter())
	if err != nil {
		return nil, err
	}
	out := map[string]reconcile.Machine{}
	for _, in := range insts {
		if !p.owned(&in) {
			continue
		}
		m := p.machine(&in)
		if old, ok := out[m.Name]; ok && cmp.Or(old.CreatedAt.Compare(m.CreatedAt), cmp.Compare(old.ID, m.ID)) <= 0 {
			continue
		}
		out[m.Name] = m
	}
	return out, nil
}

// launch runs one instance for spec.
//
// The first client token is ClientToken(fleet, cluster, name). EC2 remembers
// a token after its instance is gone, so two cases need a further token,
// derived from the previous one so that a retry derives the same chain:
// the token's instance was terminated (the name is being reused after a
// scale-down), or the token was used with other parameters (a registration
// token changed), which EC2 rejects with IdempotentParameterMismatch.
func (p *Provider) launch(ctx context.Context, spec reconcile.MachineSpec) (reconcile.Machine, error) {
	in, err := p.runInput(ctx, spec)
	if err != nil {
		return reconcile.Machine{}, err
	}
	secrets := userDataSecrets(spec.UserData, sdkaws.ToString(in.UserData))
	token := ClientToken(p.fleet, spec.Cluster, spec.Name)
	p.clusterLogger(ctx, spec.Cluster).InfoContext(ctx, "Launching instance", "machine", spec.Name, "pool", spec.Pool,
		"instanceType", spec.Size.InstanceType, "image", spec.Size.Image, "subnet", sdkaws.ToString(in.SubnetId))
	for hop := 0; ; hop++ {
		in.ClientToken = sdkaws.String(token)
		out, err := p.api.RunInstances(ctx, in)
		if err != nil {
			if apiCode(err) == codeParameterMismatch && hop < maxTokenHops {
				p.logger(ctx).InfoContext(ctx, "Client token was used with other parameters; deriving another", "machine", spec.Name)
				token = nextToken(token, "parameters:"+launchDigest(in))
				continue
			}
			return reconcile.Machine{}, fail("create", spec.Name, err, secrets...)
		}
		if len(out.Instances) != 1 {
			return reconcile.Machine{}, fmt.Errorf("aws: create %s: RunInstances returned %d instances, want 1", spec.Name, len(out.Instances))
		}
		inst := out.Instances[0]
		if st := inst.State; st != nil && (st.Name == types.InstanceStateNameTerminated || st.Name == types.InstanceStateNameShuttingDown) && hop < maxTokenHops {
			id := sdkaws.ToString(inst.InstanceId)
			p.logger(ctx).InfoContext(ctx, "Client token belongs to a terminated instance; deriving another", "machine", spec.Name, "instance", id)
			token = nextToken(token, "terminated:"+id)
			continue
		}
		if len(inst.Tags) == 0 {
			// RunInstances answers with the tags it applied; fill them in
			// should an endpoint leave them out.
			inst.Tags = tagsFor(p.fleet, p.name, spec)
		}
		m := p.machine(&inst)
		p.logger(ctx).InfoContext(ctx, "Launched instance", "machine", spec.Name, "instance", m.ID, "state", m.State)
		return m, nil
	}
}

// runInput builds the RunInstances request of spec, without client token.
func (p *Provider) runInput(ctx context.Context, spec reconcile.MachineSpec) (*ec2.RunInstancesInput, error) {
	tags := tagsFor(p.fleet, p.name, spec)
	in := &ec2.RunInstancesInput{
		ImageId:          sdkaws.String(spec.Size.Image),
		InstanceType:     types.InstanceType(spec.Size.InstanceType),
		MinCount:         sdkaws.Int32(1),
		MaxCount:         sdkaws.Int32(1),
		SubnetId:         sdkaws.String(p.subnetFor(spec.Name)),
		SecurityGroupIds: p.spec.SecurityGroups,
		MetadataOptions: &types.InstanceMetadataOptionsRequest{
			HttpTokens:   types.HttpTokensStateRequired,
			HttpEndpoint: types.InstanceMetadataEndpointStateEnabled,
		},
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: tags},
			{ResourceType: types.ResourceTypeVolume, Tags: tags},
		},
	}
	if len(spec.UserData) > 0 {
		in.UserData = sdkaws.String(base64.StdEncoding.EncodeToString(spec.UserData))
	}
	if p.spec.InstanceProfile != "" {
		in.IamInstanceProfile = &types.IamInstanceProfileSpecification{Name: sdkaws.String(p.spec.InstanceProfile)}
	}
	if disk := spec.Size.DiskGiB; disk > 0 && disk <= maxVolumeGiB {
		root, err := p.rootDevice(ctx, spec.Size.Image)
		if err != nil {
			return nil, fail("create", spec.Name+": root device of image "+spec.Size.Image, err)
		}
		in.BlockDeviceMappings = []types.BlockDeviceMapping{{
			DeviceName: sdkaws.String(root),
			Ebs: &types.EbsBlockDevice{
				VolumeSize:          sdkaws.Int32(int32(disk)),
				VolumeType:          types.VolumeTypeGp3,
				DeleteOnTermination: sdkaws.Bool(true),
			},
		}}
	}
	return in, nil
}

// rootDevice returns the name of image's root device (/dev/xvda, /dev/sda1,
// ...), which a block device mapping must name to resize the root volume.
// Images do not change their root device, so the answer is kept.
func (p *Provider) rootDevice(ctx context.Context, image string) (string, error) {
	p.mu.Lock()
	root, ok := p.rootDevices[image]
	p.mu.Unlock()
	if ok {
		return root, nil
	}
	out, err := p.api.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{image}})
	if err != nil {
		return "", err
	}
	if len(out.Images) != 1 || sdkaws.ToString(out.Images[0].RootDeviceName) == "" {
		return "", reconcile.Stalled(fmt.Errorf("image %s not found or has no root device", image))
	}
	root = sdkaws.ToString(out.Images[0].RootDeviceName)
	p.mu.Lock()
	p.rootDevices[image] = root
	p.mu.Unlock()
	return root, nil
}

// tagsFor returns the tags of spec's instance and volumes.
func tagsFor(fleet, provider string, spec reconcile.MachineSpec) []types.Tag {
	tag := func(k, v string) types.Tag { return types.Tag{Key: sdkaws.String(k), Value: sdkaws.String(v)} }
	return []types.Tag{
		tag(TagFleet, fleet),
		tag(TagProvider, provider),
		tag(TagCluster, spec.Cluster),
		tag(TagTeam, spec.Team),
		tag(TagPool, spec.Pool),
		tag(TagTemplateHash, spec.TemplateHash),
		tag(TagName, spec.Name),
	}
}

// subnetFor returns the subnet of the machine called name. Machines are
// named <cluster>-<pool>-<hash>-<n>: machine n of a pool goes to subnet n
// modulo the number of subnets, so a pool spreads round-robin across the
// subnets (and their availability zones). A name without an ordinal falls
// back to a hash of the name. Either way a retry picks the same subnet.
func (p *Provider) subnetFor(name string) string {
	subnets := p.spec.Subnets
	i := strings.LastIndexByte(name, '-')
	if n, err := strconv.ParseUint(name[i+1:], 10, 32); err == nil && i >= 0 {
		return subnets[n%uint64(len(subnets))]
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(name)) // a hash.Hash never fails
	return subnets[h.Sum64()%uint64(len(subnets))]
}

// ClientToken returns the idempotency token of the first launch of machine
// name of cluster in fleet: 64 hex digits, within EC2's 64 ASCII characters.
func ClientToken(fleet, cluster, name string) string {
	sum := sha256.Sum256([]byte("fleetd/v1\x00" + fleet + "\x00" + cluster + "\x00" + name))
	return hex.EncodeToString(sum[:])
}

// nextToken derives the token that follows token for the given reason.
func nextToken(token, reason string) string {
	sum := sha256.Sum256([]byte(token + "\x00" + reason))
	return hex.EncodeToString(sum[:])
}

// launchDigest identifies what a launch asks for, so that retries of the
// same launch derive the same token and a different launch a different one.
func launchDigest(in *ec2.RunInstancesInput) string {
	h := sha256.New()
	field := func(s string) { h.Write([]byte(s)); h.Write([]byte{0}) }
	field(sdkaws.ToString(in.ImageId))
	field(string(in.InstanceType))
	field(sdkaws.ToString(in.SubnetId))
	field(strings.Join(in.SecurityGroupIds, ","))
	field(sdkaws.ToString(in.UserData))
	if in.IamInstanceProfile != nil {
		field(sdkaws.ToString(in.IamInstanceProfile.Name))
	}
	for _, b := range in.BlockDeviceMappings {
		field(sdkaws.ToString(b.DeviceName))
		if b.Ebs != nil {
			field(strconv.Itoa(int(sdkaws.ToInt32(b.Ebs.VolumeSize))))
		}
	}
	for _, ts := range in.TagSpecifications {
		for _, t := range ts.Tags {
			field(sdkaws.ToString(t.Key) + "=" + sdkaws.ToString(t.Value))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
