package aws_test

import (
	"context"
	"errors"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/fleetd/fleetd/providers/aws"
	"github.com/fleetd/fleetd/reconcile"
)

// fakeEC2 stands in for the EC2 client through aws.EC2API.
type fakeEC2 struct {
	run      func(*ec2.RunInstancesInput) (*ec2.RunInstancesOutput, error)
	describe func(*ec2.DescribeInstancesInput) (*ec2.DescribeInstancesOutput, error)
}

func (f *fakeEC2) RunInstances(_ context.Context, in *ec2.RunInstancesInput, _ ...func(*ec2.Options)) (*ec2.RunInstancesOutput, error) {
	return f.run(in)
}

func (f *fakeEC2) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	return f.describe(in)
}

func (f *fakeEC2) TerminateInstances(context.Context, *ec2.TerminateInstancesInput, ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error) {
	return nil, errors.New("not expected")
}

func (f *fakeEC2) DescribeImages(context.Context, *ec2.DescribeImagesInput, ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error) {
	return nil, errors.New("not expected")
}

// TestCreateWithoutTagsInAnswer: an endpoint that answers RunInstances
// without the tags it applied still yields a machine with its marks.
func TestCreateWithoutTagsInAnswer(t *testing.T) {
	launched := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	api := &fakeEC2{
		describe: func(*ec2.DescribeInstancesInput) (*ec2.DescribeInstancesOutput, error) {
			return &ec2.DescribeInstancesOutput{}, nil
		},
		run: func(*ec2.RunInstancesInput) (*ec2.RunInstancesOutput, error) {
			return &ec2.RunInstancesOutput{Instances: []types.Instance{{
				InstanceId: sdkaws.String("i-0123456789abcdef0"), PrivateIpAddress: sdkaws.String("10.1.2.3"),
				State: &types.InstanceState{Name: types.InstanceStateNamePending}, LaunchTime: &launched,
			}}}, nil
		},
	}
	p, err := aws.NewWithClient(aws.Config{Fleet: "acme", Name: testProvider, Spec: testSpec()}, api)
	if err != nil {
		t.Fatal(err)
	}
	spec := machineSpecs("c", "workers", 0, 1)[0]
	spec.Size.DiskGiB = 0
	ms, err := p.Create(context.Background(), []reconcile.MachineSpec{spec})
	if err != nil {
		t.Fatal(err)
	}
	want := reconcile.Machine{ID: "i-0123456789abcdef0", Name: spec.Name, Provider: testProvider, Cluster: "c", Team: "payments",
		Pool: "workers", TemplateHash: "7c3a1", State: reconcile.MachinePending, Address: "10.1.2.3", CreatedAt: launched}
	if len(ms) != 1 || ms[0] != want {
		t.Errorf("got %+v\nwant %+v", ms, want)
	}
}

func TestNewWithClientChecksConfig(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  aws.Config
		api  aws.EC2API
	}{
		{"no fleet", aws.Config{Name: "p", Spec: testSpec()}, &fakeEC2{}},
		{"no name", aws.Config{Fleet: "f", Spec: testSpec()}, &fakeEC2{}},
		{"no subnets", aws.Config{Fleet: "f", Name: "p"}, &fakeEC2{}},
		{"no client", aws.Config{Fleet: "f", Name: "p", Spec: testSpec()}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := aws.NewWithClient(c.cfg, c.api); err == nil {
				t.Error("no error")
			}
		})
	}
}
