package benchfleet

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fleetd/fleetd/internal/testenv/ec2test"
	"github.com/fleetd/fleetd/providers/aws"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

// AWS is the provider of a converged fleet (ConvergedFiles), with its
// subnets and image.
const (
	AWSFleet    = "bench"
	AWSProvider = "aws-eu"
	AWSImage    = "ami-0abcdef1234567890"
)

// AWSSubnets are the subnets of a converged fleet's provider.
var AWSSubnets = []string{"subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"}

// ConvergedFiles returns a fleet of n clusters on one AWS provider, by path:
// 10 teams, a control pool of 3 machines and a worker pool of 3 or 4 (6.6
// machines a cluster on average, so 66,000 at 10,000 clusters), each cluster
// with the label rev: "0" that benchmarks change to push a one-file commit.
// SeedEC2 makes its machines.
func ConvergedFiles(n int) map[string][]byte {
	var teams strings.Builder
	for t := range 10 {
		fmt.Fprintf(&teams, "  - name: team-%d\n", t)
	}
	fleet := `apiVersion: fleetd.io/v1alpha1
kind: Fleet
name: ` + AWSFleet + `
providers:
  - name: ` + AWSProvider + `
    type: aws
    aws: {region: eu-west-1, subnets: [` + strings.Join(AWSSubnets, ", ") + `], image: ` + AWSImage + `}
teams:
` + teams.String() + `sizes:
  medium: {aws: {instanceType: m6i.xlarge}}
classes:
  std:
    kubernetesVersion: v1.31.4+rke2r1
    pools:
      - {name: control, roles: [etcd, controlplane], replicas: 3, size: medium}
      - {name: workers, roles: [worker], replicas: 3, size: medium}
pricing:
  ` + AWSProvider + `: {instanceHourly: {m6i.xlarge: 0.214}}
`
	files := map[string][]byte{"fleet.yaml": []byte(fleet)}
	for i := range n {
		team := fmt.Sprintf("team-%d", i%10)
		body := fmt.Sprintf("apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: c%05d\nteam: %s\nprovider: %s\nclass: std\nlabels: {rev: \"0\"}\n", i, team, AWSProvider)
		if i%5 < 3 {
			body += "pools:\n  - name: workers\n    replicas: 4\n"
		}
		files[ConvergedPath(i)] = []byte(body)
	}
	return files
}

// ConvergedPath returns the path of cluster i of ConvergedFiles.
func ConvergedPath(i int) string {
	return fmt.Sprintf("clusters/team-%d/c%05d.yaml", i%10, i)
}

// WriteConverged writes ConvergedFiles(n) into dir and returns the fleet
// loaded from it.
func WriteConverged(dir string, n int) (*schema.Fleet, error) {
	for p, data := range ConvergedFiles(n) {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			return nil, err
		}
	}
	fleet, diags := schema.Load(os.DirFS(dir))
	if fleet == nil || diags.HasErrors() {
		return nil, fmt.Errorf("converged fleet: %s", diags.Error())
	}
	return fleet, nil
}

// SeedEC2 registers the provider's image and subnets at s and launches every
// machine of fleet there, running, with the names and tags fleetd gives
// its machines, so that a first sync finds nothing to do. It returns the
// number of machines.
func SeedEC2(s *ec2test.Server, fleet *schema.Fleet) int {
	s.AddImage(AWSImage, "/dev/sda1")
	for i, subnet := range AWSSubnets {
		s.AddSubnet(subnet, fmt.Sprintf("eu-west-1%c", 'a'+i))
	}
	n := 0
	for _, c := range fleet.Clusters {
		for k := range c.Effective.Pools {
			pool := &c.Effective.Pools[k]
			t := reconcile.NewTemplate(&c.Effective, pool)
			for m := range pool.Replicas {
				s.Launch(ec2test.LaunchSpec{ImageID: AWSImage, InstanceType: pool.Machine.InstanceType, SubnetID: AWSSubnets[n%len(AWSSubnets)],
					Tags: map[string]string{aws.TagFleet: AWSFleet, aws.TagProvider: AWSProvider, aws.TagCluster: c.Effective.Name,
						aws.TagTeam: c.Effective.Team, aws.TagPool: pool.Name, aws.TagTemplateHash: t.Hash,
						aws.TagName: reconcile.MachineName(c.Effective.Name, pool.Name, t.Hash, m)}})
				n++
			}
		}
	}
	return n
}

// EC2Env is the environment that points fleetd's AWS provider (and the
// SDK's default configuration) at s with its static test credentials.
func EC2Env(s *ec2test.Server) []string {
	return []string{"AWS_ENDPOINT_URL_EC2=" + s.URL, "AWS_ACCESS_KEY_ID=" + ec2test.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + ec2test.SecretAccessKey, "AWS_EC2_METADATA_DISABLED=true", "AWS_REGION=eu-west-1",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
}
