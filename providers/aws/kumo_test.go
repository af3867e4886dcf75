package aws_test

import (
	"context"
	"errors"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/sivchari/kumo"

	"github.com/fleetd/fleetd/providers/aws"
)

// TestKumoPeer runs the provider against kumo, a third-party AWS emulator,
// as a second, independent implementation of the EC2 Query protocol. kumo's
// EC2 (v0.33.1) keeps no tags from RunInstances and ignores DescribeInstances
// filters, so it cannot host the conformance suite; what it can show is that
// the provider's own ownership checks hold when an endpoint hands it foreign
// instances: none is listed and none is terminated.
func TestKumoPeer(t *testing.T) {
	srv := kumo.NewServer()
	t.Cleanup(srv.Close)
	ctx := ctxT(t)
	creds := credentials.NewStaticCredentialsProvider("test", "test", "")

	// Someone else's instance, launched with the plain SDK client.
	client := ec2.New(ec2.Options{
		Region: testRegion, Credentials: creds, BaseEndpoint: sdkaws.String(srv.URL),
		HTTPClient: aws.WithReadOnlyBodies(nil),
	})
	out, err := client.RunInstances(ctx, &ec2.RunInstancesInput{
		ImageId: sdkaws.String(testImage), InstanceType: types.InstanceTypeT3Micro,
		MinCount: sdkaws.Int32(1), MaxCount: sdkaws.Int32(1),
	})
	if err != nil {
		t.Fatalf("kumo RunInstances: %v", err)
	}
	foreign := sdkaws.ToString(out.Instances[0].InstanceId)

	p, err := aws.New(context.Background(), aws.Config{
		Fleet: "acme", Name: testProvider, Spec: testSpec(), Endpoint: srv.URL,
		Credentials: creds, MaxAttempts: 2, MaxBackoff: 2 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The premise: kumo answers the fleet's filter with the foreign instance.
	filtered, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: sdkaws.String("tag:" + aws.TagFleet), Values: []string{"acme"}},
	}})
	if err != nil {
		t.Fatalf("kumo DescribeInstances: %v", err)
	}
	t.Logf("kumo answered the fleet filter with %d reservations", len(filtered.Reservations))

	ms, err := p.List(ctx)
	if err != nil {
		t.Fatalf("List against kumo: %v", err)
	}
	if len(ms) != 0 {
		t.Errorf("List against kumo: %d machines, want none (the instance is foreign)", len(ms))
	}
	if err := p.Delete(ctx, []string{foreign}); !errors.Is(err, aws.ErrNotOwned) {
		t.Errorf("Delete of a foreign instance: %v, want ErrNotOwned", err)
	}
	desc, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{foreign}})
	if err != nil {
		t.Fatalf("kumo DescribeInstances: %v", err)
	}
	if st := desc.Reservations[0].Instances[0].State; st == nil || st.Name != types.InstanceStateNameRunning {
		t.Errorf("foreign instance is %v after a refused delete, want running", st)
	}
	if err := p.Delete(ctx, []string{"i-0000000000000dead"}); err != nil {
		t.Errorf("Delete of an unknown instance against kumo: %v", err)
	}
}
