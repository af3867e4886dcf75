package schema

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// baseFleet is a small valid fleet.yaml; tests change it line by line, so
// the line numbers below are part of the tests.
const baseFleet = `apiVersion: fleetd.io/v1alpha1
kind: Fleet
name: acme
providers:
  - name: aws-eu
    type: aws
    aws:
      region: eu-west-1
      subnets: [subnet-0a1b2c3d4e5f60001]
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
  - name: qa
sizes:
  medium:
    aws: {instanceType: m6i.xlarge}
    vsphere: {cpus: 4, memoryMiB: 16384, diskGiB: 100}
  awsonly:
    aws: {instanceType: m6i.large}
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
        replicas: 2
        size: medium
pricing:
  aws-eu:
    instanceHourly: {m6i.xlarge: 0.214, m6i.large: 0.107}
  dc1:
    cpuHourly: 0.012
    memoryGiBHourly: 0.004
`

const baseCluster = `apiVersion: fleetd.io/v1alpha1
kind: Cluster
name: payments-prod
team: payments
provider: aws-eu
class: standard
`

func baseFS() fstest.MapFS {
	return fstest.MapFS{
		"fleet.yaml":                           {Data: []byte(baseFleet)},
		"clusters/payments/payments-prod.yaml": {Data: []byte(baseCluster)},
	}
}

func withFiles(files map[string]string) fstest.MapFS {
	fsys := baseFS()
	for p, data := range files {
		if data == "" {
			delete(fsys, p)
			continue
		}
		fsys[p] = &fstest.MapFile{Data: []byte(data)}
	}
	return fsys
}

// replaceLine swaps one line of s (1-based) for repl, which may hold several lines.
func replaceLine(s string, line int, repl string) string {
	lines := strings.Split(s, "\n")
	lines[line-1] = repl
	return strings.Join(lines, "\n")
}

func TestLoadValid(t *testing.T) {
	fleet, diags := Load(baseFS())
	if diags.HasErrors() || len(diags) > 0 {
		t.Fatalf("diagnostics:\n%s", diags.Error())
	}
	if len(fleet.Clusters) != 1 {
		t.Fatalf("clusters = %d, want 1", len(fleet.Clusters))
	}
	eff := fleet.Clusters[0].Effective
	if eff.ProviderType != ProviderAWS || eff.KubernetesVersion != "v1.31.4+rke2r1" {
		t.Errorf("effective = %+v", eff)
	}
	if got := eff.Pools[0].Machine; got.InstanceType != "m6i.xlarge" || got.Image != "ami-0abcdef1234567890" {
		t.Errorf("control machine = %+v, want m6i.xlarge with the provider's image", got)
	}
	want := []EffectiveAccess{{Group: "cn=payments,ou=groups,dc=acme,dc=example", Role: "cluster-member", Team: "payments"}}
	if fmt.Sprint(eff.Access) != fmt.Sprint(want) {
		t.Errorf("access = %+v, want %+v", eff.Access, want)
	}
}

func TestLoadExpandsClassOverrides(t *testing.T) {
	cluster := baseCluster + `provider: dc1
kubernetesVersion: v1.31.5+rke2r1
pools:
  - name: workers
    replicas: 5
access:
  - team: payments
    role: cluster-owner
  - group: "cn=ops,dc=acme,dc=example"
    role: projects-view
ttl: 2d
labels: {env: prod}
`
	cluster = replaceLine(cluster, 5, "# provider set below")
	fleet, diags := Load(withFiles(map[string]string{"clusters/payments/payments-prod.yaml": cluster}))
	if len(diags) > 0 {
		t.Fatalf("diagnostics:\n%s", diags.Error())
	}
	eff := fleet.Clusters[0].Effective
	if eff.Provider != "dc1" || eff.ProviderType != ProviderVSphere || eff.KubernetesVersion != "v1.31.5+rke2r1" {
		t.Errorf("effective = %+v", eff)
	}
	if eff.Pools[1].Replicas != 5 || eff.Pools[0].Replicas != 3 {
		t.Errorf("pools = %+v", eff.Pools)
	}
	if m := eff.Pools[1].Machine; m.CPUs != 4 || m.MemoryMiB != 16384 || m.Template != "ubuntu" || m.InstanceType != "" {
		t.Errorf("vsphere machine = %+v", m)
	}
	if eff.TTL != 48*time.Hour {
		t.Errorf("ttl = %v", eff.TTL)
	}
	// The file binds the owning team itself, so no default cluster-member.
	want := "[{cn=ops,dc=acme,dc=example projects-view } {cn=payments,ou=groups,dc=acme,dc=example cluster-owner payments}]"
	if got := fmt.Sprint(eff.Access); got != want {
		t.Errorf("access = %s, want %s", got, want)
	}
}

func TestLoadDiagnostics(t *testing.T) {
	const cf = "clusters/payments/payments-prod.yaml"
	cluster := func(extra string) map[string]string { return map[string]string{cf: baseCluster + extra} }
	clusterLine := func(line int, repl string) map[string]string {
		return map[string]string{cf: replaceLine(baseCluster, line, repl)}
	}
	fleetLine := func(line int, repl string) map[string]string {
		return map[string]string{"fleet.yaml": replaceLine(baseFleet, line, repl)}
	}
	tests := []struct {
		name  string
		files map[string]string
		// want lists the expected diagnostics' "path:line:col: field: message" prefixes.
		want []string
	}{
		{"schema and reference errors together", clusterLine(6, "class: standrd\nprotected: yes"),
			[]string{
				cf + `:6:8: class: unknown class "standrd" (did you mean "standard"?)`,
				cf + `:7:12: protected: expected boolean, got string "yes"`,
			}},
		{"wrong type", cluster("protected: yes\n"),
			[]string{cf + `:7:12: protected: expected boolean, got string "yes"`}},
		{"range", cluster("pools:\n  - name: workers\n    replicas: 501\n"),
			[]string{cf + ":9:15: pools[0].replicas: 501 is too large: the maximum is 500"}},
		{"negative", cluster("pools:\n  - name: workers\n    replicas: -1\n"),
			[]string{cf + ":9:15: pools[0].replicas: -1 is too small: the minimum is 0"}},
		{"pattern", clusterLine(3, "name: Payments_Prod"),
			[]string{cf + `:3:7: name: "Payments_Prod" is not valid: want a DNS label`}},
		{"enum", fleetLine(6, "    type: openstack"),
			[]string{`fleet.yaml:6:11: providers[0].type: "openstack" is not allowed; use one of "aws", "vsphere"`}},
		{"unknown field with suggestion", cluster("pools:\n  - name: workers\n    replica: 4\n"),
			[]string{cf + `:9:5: pools[0].replica: unknown field "replica" (did you mean "replicas"?); allowed fields: name, replicas, size`}},
		{"missing required", clusterLine(6, "# no class"),
			[]string{cf + `:1:1: class: required field "class" is missing`}},
		{"wrong apiVersion", clusterLine(1, "apiVersion: fleetd.io/v1"),
			[]string{cf + `:1:13: apiVersion: must be "fleetd.io/v1alpha1", got "fleetd.io/v1"`}},
		{"fleet kind in cluster folder", clusterLine(2, "kind: Fleet"),
			[]string{cf + ":2:7: kind: kind Fleet belongs in fleet.yaml at the repo root; this file must be of kind Cluster"}},
		{"unknown provider", clusterLine(5, "provider: aws-west"),
			[]string{cf + `:5:11: provider: unknown provider "aws-west"; providers in fleet.yaml: aws-eu, dc1`}},
		{"unknown class with suggestion", clusterLine(6, "class: standrd"),
			[]string{cf + `:6:8: class: unknown class "standrd" (did you mean "standard"?); classes in fleet.yaml: standard`}},
		{"unknown team", clusterLine(4, "team: payment"),
			[]string{cf + `:4:7: team: unknown team "payment" (did you mean "payments"?); teams in fleet.yaml: payments, qa`}},
		{"unknown size override", cluster("pools:\n  - name: workers\n    size: huge\n"),
			[]string{cf + `:9:11: pools[0].size: unknown size "huge"; sizes in fleet.yaml: awsonly, medium`}},
		{"unknown pool override", cluster("pools:\n  - name: wrkers\n"),
			[]string{cf + `:8:11: pools[0].name: class standard has no pool "wrkers" (did you mean "workers"?); its pools: control, workers`}},
		{"size without the provider's type", clusterLine(5, "provider: dc1\npools:\n  - name: workers\n    size: awsonly"),
			[]string{cf + ":8:11: pools[0].size: pool workers: size awsonly has no vsphere mapping, so it cannot run on provider dc1 (type vsphere)"}},
		{"unknown size in class", fleetLine(43, "        size: hughe"),
			[]string{`fleet.yaml:43:15: classes.standard.pools[1].size: unknown size "hughe"`}},
		{"unknown team in access", cluster("access:\n  - team: trading\n    role: cluster-owner\n"),
			[]string{cf + `:8:11: access[0].team: unknown team "trading"`}},
		{"access with group and team", cluster("access:\n  - team: qa\n    group: cn=x,dc=y\n    role: cluster-owner\n"),
			[]string{cf + ":8:5: access[0]: an access entry names exactly one of group (an LDAP DN) and team"}},
		{"folder team mismatch", map[string]string{cf: "", "clusters/qa/payments-prod.yaml": baseCluster},
			[]string{`clusters/qa/payments-prod.yaml:4:7: team: the file is in clusters/qa/ but its team is "payments"`}},
		{"duplicate cluster name", map[string]string{"clusters/payments/copy.yaml": baseCluster},
			[]string{
				"clusters/payments/copy.yaml:3:7: warning: name: the file is named copy.yaml but declares cluster payments-prod",
				`clusters/payments/payments-prod.yaml:3:7: name: duplicate cluster name "payments-prod": already declared at clusters/payments/copy.yaml:3:7`,
			}},
		{"duplicate provider name", fleetLine(11, "  - name: aws-eu"),
			[]string{
				`fleet.yaml:11:11: providers[1].name: duplicate provider name "aws-eu" (first declared at line 5)`,
				`fleet.yaml:47:3: pricing.dc1: unknown provider "dc1"; providers in fleet.yaml: aws-eu, aws-eu`,
			}},
		{"duplicate team name", fleetLine(25, "  - name: payments"),
			[]string{`fleet.yaml:25:11: teams[1].name: duplicate team name "payments" (first declared at line 23)`}},
		{"even etcd members", cluster("pools:\n  - name: control\n    replicas: 2\n"),
			[]string{cf + ":9:15: pools[0].replicas: the cluster has 2 etcd members: etcd needs an odd number"}},
		{"no etcd member", cluster("pools:\n  - name: control\n    replicas: 0\n"),
			[]string{
				cf + ":9:15: pools[0].replicas: the cluster has no controlplane node",
				cf + ":9:15: pools[0].replicas: the cluster has no etcd member",
			}},
		{"no worker", cluster("pools:\n  - name: workers\n    replicas: 0\n"),
			[]string{cf + ":9:15: pools[0].replicas: the cluster has no worker node"}},
		{"even etcd in class", fleetLine(38, "        replicas: 2"),
			[]string{"fleet.yaml:33:3: classes.standard: class standard has 2 etcd members: etcd needs an odd number (1, 3, 5, ...) to keep quorum; change the class's etcd replicas. Clusters that inherit it and are held: payments-prod"}},
		{"class without controlplane role", fleetLine(37, "        roles: [etcd]"),
			[]string{"fleet.yaml:35:5: classes.standard.pools: class standard has no pool with the controlplane role"}},
		{"bad ttl", cluster("ttl: 2w\n"),
			[]string{cf + `:7:6: ttl: "2w" is not valid: want a duration in minutes, hours or days such as 90m, 48h or 7d`}},
		{"bad version", cluster("kubernetesVersion: v1.31\n"),
			[]string{cf + `:7:20: kubernetesVersion: "v1.31" is not valid: want a version such as v1.31.4+rke2r1`}},
		{"bad label", cluster("labels:\n  bad key: x\n"),
			[]string{cf + `:8:3: labels["bad key"]: "bad key" is not a valid label key`}},
		{"literal secret", fleetLine(15, "      credentials: administrator:hunter2"),
			[]string{"fleet.yaml:15:20: providers[1].vsphere.credentials: \"administrator:hunter2\" is not valid: want env:NAME or file:/absolute/path"}},
		{"syntax error tab", cluster("pools:\n\t- name: workers\n"),
			[]string{cf + ":8:1: YAML syntax error: a tab indents this line"}},
		{"syntax error indentation", cluster("pools:\n  - name: workers\n   replicas: 2\n"),
			[]string{cf + ":9:4: YAML syntax error: this line's indentation (3 spaces) matches no level of the block that starts at line 7"}},
		{"duplicate key", cluster("team: qa\n"),
			[]string{cf + `:7:1: team: duplicate key "team" (first defined at line 4)`}},
		{"two documents", cluster("---\nname: other\n"),
			[]string{cf + ":7:1: a second YAML document"}},
		{"alias bomb", map[string]string{cf: aliasBomb}, []string{cf + ":4:29: d[7]: alias *c expands to too many values"}},
		{"invalid utf-8", cluster("labels: {env: \"\xff\"}\n"),
			[]string{cf + ":7:16: invalid UTF-8"}},
		{"empty file", map[string]string{cf: "# nothing\n"},
			[]string{cf + ":1:1: the file is empty"}},
		{"not a mapping", map[string]string{cf: "- a\n- b\n"},
			[]string{cf + ":1:1: expected a mapping"}},
		{"missing fleet.yaml", map[string]string{"fleet.yaml": ""},
			[]string{"fleet.yaml: fleet.yaml not found"}},
		{"non-YAML under clusters", map[string]string{"clusters/payments/notes.txt": "x"},
			[]string{"clusters/payments/notes.txt: not a cluster file: only .yaml and .yml files belong under clusters/"}},
		{"file directly in clusters", map[string]string{"clusters/x.yaml": baseCluster},
			[]string{"clusters/x.yaml: cluster files go in a folder per team"}},
		{"too large", map[string]string{cf: baseCluster + strings.Repeat("# padding\n", 110000)},
			[]string{cf + ": the file is 1100"}},
		{"machine names too long", clusterLine(3, "name: "+strings.Repeat("a", 50)),
			[]string{cf + ":3:7: name: machine names such as", cf + ":3:7: warning: name: the file is named"}},
		{"pricing for a vsphere provider on aws", fleetLine(46, "    instanceHourly: {m6i.xlarge: 0.214, m6i.large: 0.107}\n    cpuHourly: 1"),
			[]string{"fleet.yaml:47:5: pricing.aws-eu.cpuHourly: cpuHourly prices vSphere providers"}},
		{"missing price is a warning", fleetLine(46, "    instanceHourly: {m6i.large: 0.107}"),
			[]string{"fleet.yaml:28:25: warning: sizes.medium.aws.instanceType: no price for m6i.xlarge on provider aws-eu"}},
		{"resource pool and cluster", fleetLine(17, "      computeCluster: C\n      resourcePool: R"),
			[]string{"fleet.yaml:14:7: providers[1].vsphere: set exactly one of computeCluster and resourcePool"}},
		{"bad status branch", map[string]string{"fleet.yaml": baseFleet + "status:\n  branch: a..b\n"},
			[]string{`fleet.yaml:51:11: status.branch: "a..b" is not a valid branch name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Load(withFiles(tt.files))
			if len(diags) != len(tt.want) {
				t.Fatalf("got %d diagnostics, want %d:\n%s", len(diags), len(tt.want), diags.Error())
			}
			for i, w := range tt.want {
				if got := diags[i].String(); !strings.HasPrefix(got, w) {
					t.Errorf("diagnostic %d:\n got: %s\nwant: %s…", i, got, w)
				}
			}
		})
	}
}

const aliasBomb = `a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]
`

func TestLoadInvalidFleetStopsEverything(t *testing.T) {
	fleet, diags := Load(withFiles(map[string]string{"fleet.yaml": replaceLine(baseFleet, 3, "name: ACME")}))
	if fleet != nil {
		t.Fatalf("fleet = %+v, want nil for an invalid fleet.yaml", fleet)
	}
	if !diags.HasErrors() {
		t.Fatal("want errors")
	}
}

func TestLoadRejectsOnlyTheBadCluster(t *testing.T) {
	bad := replaceLine(baseCluster, 3, "name: qa-broken\nteam: qa\npools: [{name: control, replicas: 2}]")
	bad = replaceLine(bad, 6, "")
	fleet, diags := Load(withFiles(map[string]string{"clusters/qa/broken.yaml": bad}))
	if fleet == nil || len(fleet.Clusters) != 1 || fleet.Clusters[0].Spec.Name != "payments-prod" {
		t.Fatalf("fleet = %+v, want payments-prod to load", fleet)
	}
	if len(fleet.Rejected) != 1 || fleet.Rejected[0].Path != "clusters/qa/broken.yaml" || fleet.Rejected[0].Name != "qa-broken" {
		t.Fatalf("rejected = %+v", fleet.Rejected)
	}
	if !diags.HasErrors() {
		t.Fatal("want errors")
	}
}

func TestLoadAcceptsCommonEncodings(t *testing.T) {
	for name, data := range map[string]string{
		"byte order mark":       "\ufeff" + baseCluster,
		"CRLF line endings":     strings.ReplaceAll(baseCluster, "\n", "\r\n"),
		"document markers":      "---\n" + baseCluster + "...\n",
		"comments and flow map": "# owned by payments\n" + strings.Replace(baseCluster, "class: standard", "class: standard # the default\nlabels: {a: b}", 1),
	} {
		t.Run(name, func(t *testing.T) {
			fleet, diags := Load(withFiles(map[string]string{"clusters/payments/payments-prod.yaml": data}))
			if len(diags) > 0 || len(fleet.Clusters) != 1 {
				t.Fatalf("diagnostics:\n%s", diags.Error())
			}
		})
	}
}

func TestLoadMergeKeysAndAliases(t *testing.T) {
	cluster := baseCluster + `labels: &l {env: prod}
pools:
  - &w {name: workers, replicas: 5}
`
	fleet, diags := Load(withFiles(map[string]string{"clusters/payments/payments-prod.yaml": cluster}))
	if len(diags) > 0 {
		t.Fatalf("diagnostics:\n%s", diags.Error())
	}
	if got := fleet.Clusters[0].Effective.Pools[1].Replicas; got != 5 {
		t.Errorf("workers = %d, want 5", got)
	}
}

func TestLoadSymlinks(t *testing.T) {
	dir := t.TempDir()
	write := func(p, data string) {
		t.Helper()
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("fleet.yaml", baseFleet)
	write("outside/secret.yaml", baseCluster)
	if err := os.MkdirAll(filepath.Join(dir, "clusters/payments"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside/secret.yaml", filepath.Join(dir, "clusters/payments/link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside", filepath.Join(dir, "clusters/qa")); err != nil {
		t.Fatal(err)
	}
	fleet, diags := Load(os.DirFS(dir))
	want := []string{
		"clusters/payments/link.yaml: symbolic links are not followed",
		"clusters/qa: symbolic links are not followed",
	}
	if len(diags) != len(want) {
		t.Fatalf("diagnostics:\n%s", diags.Error())
	}
	for i, w := range want {
		if !strings.HasPrefix(diags[i].String(), w) {
			t.Errorf("got %s, want %s…", diags[i], w)
		}
	}
	if fleet == nil || len(fleet.Clusters) != 0 {
		t.Errorf("clusters = %+v, want none", fleet)
	}
}

func TestLoadDiagnosticsSorted(t *testing.T) {
	_, diags := Load(withFiles(map[string]string{
		"clusters/qa/b.yaml": replaceLine(baseCluster, 3, "name: b\nprotected: 1\nbogus: 2"),
		"clusters/qa/a.yaml": replaceLine(baseCluster, 3, "name: a\nbogus: 1\nprotected: 1"),
	}))
	var got []string
	for _, d := range diags {
		got = append(got, fmt.Sprintf("%s:%d", d.Path, d.Line))
	}
	want := "[clusters/qa/a.yaml:4 clusters/qa/a.yaml:5 clusters/qa/a.yaml:6 clusters/qa/b.yaml:4 clusters/qa/b.yaml:5 clusters/qa/b.yaml:6]"
	if fmt.Sprint(got) != want {
		t.Errorf("order = %v, want %s\n%s", got, want, diags.Error())
	}
}

func TestExampleFleetIsValid(t *testing.T) {
	fleet, diags := Load(os.DirFS("../examples/fleet-repo"))
	if len(diags) > 0 {
		t.Fatalf("examples/fleet-repo:\n%s", diags.Error())
	}
	if len(fleet.Clusters) < 8 {
		t.Errorf("example fleet has %d clusters, want at least 8", len(fleet.Clusters))
	}
}

// The example fleet keeps copies of the schemas for editors; they must be the
// ones fleetd embeds.
func TestExampleSchemasAreCurrent(t *testing.T) {
	for _, k := range []string{"fleet", "cluster"} {
		want, _ := JSONSchema(k)
		got, err := os.ReadFile("../examples/fleet-repo/.schemas/" + k + ".schema.json")
		if err != nil || string(got) != string(want) {
			t.Errorf("examples/fleet-repo/.schemas/%s.schema.json is stale (%v): run fleetd schema %s > it", k, err, k)
		}
	}
}

func TestSchemasCompile(t *testing.T) {
	if _, err := compiled(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"fleet", "cluster"} {
		if _, err := JSONSchema(k); err != nil {
			t.Error(err)
		}
	}
}

var _ fs.FS = fstest.MapFS{}

func TestIsClusterFilePath(t *testing.T) {
	for p, want := range map[string]bool{
		"clusters/qa/qa-1.yaml": true, "clusters/qa/qa-1.yml": true,
		"clusters/qa/.qa-1.yaml": false, "clusters/qa/README.md": false, "clusters/qa/sub/x.yaml": false,
		"clusters/x.yaml": false, "clusters//x.yaml": false, "fleet.yaml": false, "other/qa/x.yaml": false,
		"clusters/qa/.yaml": false,
	} {
		if got := IsClusterFilePath(p); got != want {
			t.Errorf("IsClusterFilePath(%q) = %v, want %v", p, got, want)
		}
	}
}
