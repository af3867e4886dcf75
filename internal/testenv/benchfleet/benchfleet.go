// Package benchfleet generates large fleet repos for benchmarks: a fleet.yaml
// and n cluster files spread over teams and providers, all valid.
package benchfleet

import (
	"fmt"
	"os"
	"path/filepath"
)

// Teams are the teams of a generated fleet.
var Teams = []string{"payments", "qa", "data", "platform"}

// Fleet is the fleet.yaml of a generated fleet.
const Fleet = `apiVersion: fleetd.io/v1alpha1
kind: Fleet
name: bench
providers:
  - name: aws-eu
    type: aws
    aws:
      region: eu-west-1
      subnets: [subnet-0a1b2c3d4e5f60001, subnet-0a1b2c3d4e5f60002]
      securityGroups: [sg-0123456789abcdef0]
      image: ami-0abcdef1234567890
  - name: dc1
    type: vsphere
    vsphere:
      server: https://vcenter.example/sdk
      credentials: env:VSPHERE
      datacenter: DC1
      computeCluster: Compute
      datastore: ds1
      network: net1
      folder: fleetd
      template: ubuntu
teams:
  - name: payments
    groups: ["cn=payments,ou=groups,dc=acme,dc=example"]
    budgetMonthly: 100000000
  - name: qa
    groups: ["cn=qa,ou=groups,dc=acme,dc=example"]
  - name: data
    groups: ["cn=data,ou=groups,dc=acme,dc=example"]
  - name: platform
    groups: ["cn=platform,ou=groups,dc=acme,dc=example"]
sizes:
  medium:
    aws: {instanceType: m6i.xlarge}
    vsphere: {cpus: 4, memoryMiB: 16384, diskGiB: 100}
  large:
    aws: {instanceType: m6i.2xlarge, diskGiB: 200}
    vsphere: {cpus: 8, memoryMiB: 32768, diskGiB: 200}
classes:
  standard:
    kubernetesVersion: v1.31.4+rke2r1
    pools:
      - name: control
        roles: [etcd, controlplane]
        replicas: 3
        size: medium
      - name: workers
        roles: [worker]
        replicas: 3
        size: large
pricing:
  aws-eu:
    instanceHourly: {m6i.xlarge: 0.214, m6i.2xlarge: 0.428}
  dc1:
    cpuHourly: 0.012
    memoryGiBHourly: 0.004
`

// Path returns the path of cluster i in a generated fleet.
func Path(i int) string {
	return fmt.Sprintf("clusters/%s/c%05d.yaml", Teams[i%len(Teams)], i)
}

// Cluster returns the cluster file of cluster i.
func Cluster(i int) []byte {
	team := Teams[i%len(Teams)]
	return fmt.Appendf(nil, `# yaml-language-server: $schema=../../.schemas/cluster.schema.json
apiVersion: fleetd.io/v1alpha1
kind: Cluster
name: c%05d
team: %s
provider: %s
class: standard
pools:
  - name: workers
    replicas: %d
    size: %s
access:
  - group: "cn=ops,ou=groups,dc=acme,dc=example"
    role: cluster-owner
  - team: platform
    role: projects-view
labels: {env: prod, idx: "%d"}
`, i, team, []string{"aws-eu", "dc1"}[i/len(Teams)%2], 1+i%7, []string{"medium", "large"}[i%2], i)
}

// Files returns the files of a fleet of n clusters by path.
func Files(n int) map[string][]byte {
	files := map[string][]byte{"fleet.yaml": []byte(Fleet)}
	for i := range n {
		files[Path(i)] = Cluster(i)
	}
	return files
}

// Write writes a fleet of n clusters into dir.
func Write(dir string, n int) error {
	for p, data := range Files(n) {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
