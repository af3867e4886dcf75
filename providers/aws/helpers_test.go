package aws_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/providers/aws"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

const (
	testRegion     = "eu-west-1"
	testImage      = "ami-0123456789abcdef0"
	testRootDevice = "/dev/sda1"
	testProfile    = "fleetd-node"
	testProvider   = "aws-eu"
	// secretToken stands for the Rancher registration token in user data.
	secretToken = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0" //nolint:gosec // a made-up token whose leaks the tests look for
)

var (
	testSubnets = []string{"subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"}
	testZones   = []string{"eu-west-1a", "eu-west-1b", "eu-west-1c"}
	testGroups  = []string{"sg-0123456789abcdef0", "sg-0fedcba9876543210"}
	testSize    = schema.MachineSize{InstanceType: "m6i.xlarge", Image: testImage, DiskGiB: 100}
)

// newServer starts an EC2 endpoint that knows the test image and subnets.
func newServer(t testing.TB) *ec2test.Server {
	t.Helper()
	srv := ec2test.New()
	t.Cleanup(srv.Close)
	srv.AddImage(testImage, testRootDevice)
	for i, s := range testSubnets {
		srv.AddSubnet(s, testZones[i])
	}
	return srv
}

func testSpec() schema.AWSProvider {
	return schema.AWSProvider{
		Region:          testRegion,
		Subnets:         testSubnets,
		SecurityGroups:  testGroups,
		InstanceProfile: testProfile,
		Image:           testImage,
	}
}

// testConfig is the configuration of a provider of fleet talking to srv with
// the real SDK: static credentials, retries with short backoff.
func testConfig(srv *ec2test.Server, fleet string) aws.Config {
	return aws.Config{
		Fleet:       fleet,
		Name:        testProvider,
		Spec:        testSpec(),
		Endpoint:    srv.URL,
		MaxAttempts: 3,
		MaxBackoff:  2 * time.Millisecond,
		Credentials: credentials.NewStaticCredentialsProvider(ec2test.AccessKeyID, ec2test.SecretAccessKey, ""),
	}
}

func newProvider(t testing.TB, srv *ec2test.Server, fleet string, opts ...func(*aws.Config)) *aws.Provider {
	t.Helper()
	cfg := testConfig(srv, fleet)
	for _, o := range opts {
		o(&cfg)
	}
	p, err := aws.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("aws.New: %v", err)
	}
	return p
}

func withAttempts(n int) func(*aws.Config) { return func(c *aws.Config) { c.MaxAttempts = n } }

func withLogger(l *slog.Logger) func(*aws.Config) { return func(c *aws.Config) { c.Logger = l } }

func withRetryMode(m sdkaws.RetryMode) func(*aws.Config) {
	return func(c *aws.Config) { c.RetryMode = m }
}

// machineSpecs returns n specs of one pool, named as the reconciler names
// machines, ordinals first..first+n-1, each with user data holding a secret.
func machineSpecs(cluster, pool string, first, n int) []reconcile.MachineSpec {
	out := make([]reconcile.MachineSpec, 0, n)
	for i := first; i < first+n; i++ {
		out = append(out, reconcile.MachineSpec{
			Name:         fmt.Sprintf("%s-%s-7c3a1-%d", cluster, pool, i),
			Cluster:      cluster,
			Team:         "payments",
			Pool:         pool,
			TemplateHash: "7c3a1",
			Size:         testSize,
			UserData:     []byte("#cloud-config\nruncmd:\n  - curl -fsSL https://rancher.example/system-agent-install.sh | sh -s - --token " + secretToken + " --etcd\n"),
		})
	}
	return out
}

// ownedTags are the tags of a machine of fleet that fleetd made.
func ownedTags(fleet, cluster, name string) map[string]string {
	return map[string]string{
		aws.TagFleet: fleet, aws.TagProvider: testProvider, aws.TagCluster: cluster, aws.TagTeam: "payments",
		aws.TagPool: "workers", aws.TagTemplateHash: "7c3a1", aws.TagName: name,
	}
}

// seed launches n instances of fleet's cluster directly on srv.
func seed(srv *ec2test.Server, fleet, cluster string, n int) []string {
	ids := make([]string, n)
	for i := range n {
		ids[i] = srv.Launch(ec2test.LaunchSpec{
			ImageID: testImage, InstanceType: "m6i.xlarge", SubnetID: testSubnets[i%len(testSubnets)],
			Tags: ownedTags(fleet, cluster, fmt.Sprintf("%s-workers-7c3a1-%d", cluster, i)),
		})
	}
	return ids
}

// live counts srv's instances that are not terminated.
func live(srv *ec2test.Server) int {
	n := 0
	for _, in := range srv.Instances() {
		if in.State != ec2test.StateTerminated {
			n++
		}
	}
	return n
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
