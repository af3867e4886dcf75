package schema

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// The differential test judges a corpus of fleet files twice: by fleetd's
// loader and by an independent validator, Ajv (JSON Schema draft 2020-12) on
// Node with js-yaml (YAML 1.2 core schema), against the schemas fleetd
// embeds. Both must agree on every file, except where fleetd checks what a
// schema cannot (cross-file checks), and each such case says which check.
//
// `make test` installs Ajv (pinned by hack/ajv/package-lock.json) and sets
// FLEETD_AJV_DIR and FLEETD_REQUIRE_AJV=1, so there the test never skips.

// schemaChecks are the checks of diagnostics that a JSON schema validator
// makes too: YAML parsing and the schema itself.
var schemaChecks = []string{"schema", "yaml", "duplicate-key", "encoding", "alias-bomb"}

type diffCase struct {
	name string
	kind string // fleet or cluster
	text string
	// crossFile names the fleetd check that rejects the file beyond the
	// schema (an expected difference); empty when both must agree fully.
	crossFile string
	// path and fleet place the file in a repo; by default a cluster of
	// team payments beside baseFleet.
	path, fleet string
}

func diffCorpus(t *testing.T) []diffCase {
	t.Helper()
	var cases []diffCase
	// The example fleet, as is.
	root := filepath.Join("..", "examples", "fleet-repo")
	exFleet, err := os.ReadFile(filepath.Join(root, "fleet.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, diffCase{name: "example fleet.yaml", kind: "fleet", text: string(exFleet), path: FleetFile})
	paths, _ := filepath.Glob(filepath.Join(root, "clusters", "*", "*.yaml"))
	if len(paths) < 5 {
		t.Fatalf("example clusters: %v", paths)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		cases = append(cases, diffCase{name: "example " + filepath.Base(p), kind: "cluster", text: string(data),
			path: filepath.ToSlash(rel), fleet: string(exFleet)})
	}

	// Mutations of a cluster file: one line added or replaced each.
	cl := func(name, extra, cross string) {
		cases = append(cases, diffCase{name: "cluster " + name, kind: "cluster", text: baseCluster + extra, crossFile: cross})
	}
	clLine := func(name string, line int, repl, cross string) {
		cases = append(cases, diffCase{name: "cluster " + name, kind: "cluster", text: replaceLine(baseCluster, line, repl), crossFile: cross})
	}
	cl("replicas 0", "pools:\n  - name: workers\n    replicas: 0\n", "roles")
	for _, v := range []string{"1", "010", "0o17", "0x1F", "+3", "500", "501", "-1", "1_1", "0b11", "+0x10", "1:30", "3.0", "3.5", "1e2", "'3'", "\"3\"", "null", "~", "true", "yes", "on", "[3]", "{n: 3}", ".inf", "1e400", "0x", "0o8"} {
		cl("replicas "+v, "pools:\n  - name: workers\n    replicas: "+v+"\n", "")
	}
	for _, v := range []string{"90m", "48h", "7d", "3650d", "3651d", "87600h", "87601h", "5256000m", "5256001m", "999999999d", "0d", "07d", "1w", "1d ", "'1d'", "1", "1.5d", "١d", "-1d", "+1d", "12345678901234567890d"} {
		cross := ""
		cl("ttl "+v, "ttl: "+v+"\n", cross)
	}
	for _, v := range []string{"v1.31.4+rke2r1", "v1.31.4+k3s1", "v1.31", "v1.31.4", "v1.３1.4+rke2r1", "v1.31.4+rke2r١", "V1.31.4+rke2r1", "v1.31.4+rke2r1\u00a0", "v2.1.1+rke2r1"} {
		cl("version "+v, "kubernetesVersion: \""+v+"\"\n", "")
	}
	for _, v := range []string{"payments-prod", "Payments", "a", strings.Repeat("a", 63), strings.Repeat("a", 64), "-a", "a-", "a_b", "a.b", "ä", "a\u00a0", "１"} {
		clLine("name "+v, 3, "name: \""+v+"\"", map[bool]string{true: "name"}[len(v) == 63])
	}
	groups := []string{"cn=ops,dc=acme", "cn=ops, dc=acme", "cn=ops,\u00a0dc=acme", "cn=ops,\vdc=acme", "cn=ops,\tdc=acme", "cn=ops", "cn=", "=ops", "cn=ops,,dc=x", "CN=Ops,DC=Acme", "cn=ops\u2028,dc=acme", "cn=@all,dc=acme"}
	for _, g := range groups {
		js, _ := json.Marshal(g)
		cl("group "+string(js), "access:\n  - group: "+string(js)+"\n    role: cluster-owner\n", "")
	}
	cl("access with team", "access:\n  - team: payments\n    role: projects-view\n", "")
	cl("access with both", "access:\n  - team: payments\n    group: cn=x,dc=y\n    role: cluster-owner\n", "")
	cl("access with neither", "access:\n  - role: cluster-owner\n", "")
	cl("access without role", "access:\n  - team: payments\n", "")
	cl("access unknown role", "access:\n  - team: payments\n    role: owner\n", "role")
	cl("access unknown team", "access:\n  - team: trading\n    role: cluster-owner\n", "reference")
	cl("access role not a label", "access:\n  - team: payments\n    role: Cluster_Owner\n", "")
	cl("labels ok", "labels: {env: prod, app.kubernetes.io/name: x}\n", "")
	cl("label value too long", "labels: {env: "+strings.Repeat("x", 64)+"}\n", "")
	cl("label value not a string", "labels: {env: 3}\n", "")
	cl("label key invalid", "labels: {\"bad key\": x}\n", "labels")
	cl("label reserved prefix", "labels: {fleetd.io/x: y}\n", "labels")
	cl("unknown field", "replica: 3\n", "")
	cl("unknown pool field", "pools:\n  - name: workers\n    replica: 3\n", "")
	cl("pool without name", "pools:\n  - replicas: 3\n", "")
	cl("unknown pool", "pools:\n  - name: wrkers\n", "reference")
	cl("unknown size", "pools:\n  - name: workers\n    size: huge\n", "reference")
	cl("even etcd by override", "pools:\n  - name: control\n    replicas: 2\n", "roles")
	cl("protected", "protected: true\n", "")
	cl("protected not bool", "protected: yes\n", "")
	cl("paused", "paused: false\n", "")
	cl("duplicate key", "team: payments\n", "")
	cl("tab indentation", "pools:\n\t- name: workers\n", "")
	cl("bad indentation", "pools:\n  - name: workers\n   replicas: 2\n", "")
	cl("second document", "---\nname: x\n", "")
	clLine("wrong kind", 2, "kind: Fleet", "")
	clLine("wrong apiVersion", 1, "apiVersion: fleetd.io/v1", "")
	clLine("no class", 6, "# none", "")
	clLine("unknown class", 6, "class: standrd", "reference")
	clLine("unknown provider", 5, "provider: aws-west", "reference")
	clLine("unknown team", 4, "team: payment", "reference")
	clLine("team of another folder", 4, "team: qa", "layout")
	cases = append(cases,
		diffCase{name: "cluster empty", kind: "cluster", text: ""},
		diffCase{name: "cluster a list", kind: "cluster", text: "- a\n- b\n"},
		diffCase{name: "cluster a scalar", kind: "cluster", text: "hello\n"},
	)

	// Mutations of fleet.yaml.
	fl := func(name string, line int, repl, cross string) {
		cases = append(cases, diffCase{name: "fleet " + name, kind: "fleet", text: replaceLine(baseFleet, line, repl), crossFile: cross})
	}
	flPlus := func(name, extra, cross string) {
		cases = append(cases, diffCase{name: "fleet " + name, kind: "fleet", text: baseFleet + extra, crossFile: cross})
	}
	for _, v := range []string{"0.214", "0", "1000000", "1000001", "1.7e308", "-1", "'0.2'", "1_000", ".inf", "1e6", "0x10"} {
		fl("instance price "+v, 46, "    instanceHourly: {m6i.xlarge: "+v+", m6i.large: 0.107}", "")
		fl("cpu price "+v, 48, "    cpuHourly: "+v, "")
	}
	for _, v := range []string{"6000", "1e12", "1e13", "1.7e308", "-5", "0"} {
		fl("budget "+v, 25, "  - name: qa\n    budgetMonthly: "+v, "")
	}
	for _, v := range []string{"eu-west-1", "eu-west-١", "eu-west-1\u00a0", "EU-west-1", "eu-1"} {
		fl("region "+v, 8, "      region: \""+v+"\"", "")
	}
	for _, v := range []string{"https://vcenter.example/sdk", "http://vcenter.example/sdk", "https://user@vcenter.example/sdk", "https://vcenter.example/s dk", "https://vcenter.example/s\u00a0dk", "https://vcenter\u00a0example/sdk", "https://vcenter.example/sdk\u2028"} {
		fl("server "+v, 14, "      server: \""+v+"\"", "")
	}
	for _, v := range []string{"fleetd-node", "fleetd node", "fleetd\u00a0node", "fl+e=e,t.d@-_", "ï"} {
		fl("instance profile "+v, 10, "      image: ami-0abcdef1234567890\n      instanceProfile: \""+v+"\"", "")
	}
	fl("aws with vsphere block", 10, "      image: ami-0abcdef1234567890\n    vsphere: {}", "")
	fl("vsphere without block", 13, "    vsfere:", "")
	fl("both compute cluster and pool", 17, "      computeCluster: C\n      resourcePool: R", "")
	fl("neither compute cluster nor pool", 17, "      # none", "")
	fl("even etcd class", 38, "        replicas: 2", "roles")
	fl("class without controlplane", 37, "        roles: [etcd]", "roles")
	fl("unknown size in class", 43, "        size: hughe", "reference")
	fl("memory not a multiple of 4", 29, "    vsphere: {cpus: 4, memoryMiB: 16385, diskGiB: 100}", "")
	fl("replicas 010 is ten, an even etcd count", 38, "        replicas: 010", "roles")
	fl("replicas 0o3", 38, "        replicas: 0o3", "")
	for _, v := range []string{"fleet-status", "a..b", "a//b", "a/.b", "a/", "a.", "a.lock", "a.lock/b", "release/v1.2", ".a", "a b", "a\u00a0b"} {
		flPlus("branch "+v, "status:\n  branch: \""+v+"\"\n", "")
	}
	for _, v := range []string{"fleetd@acme.example", "fleetd", "fleet d@acme.example", "fleetd@acme\u00a0example", "a@b@c"} {
		flPlus("email "+v, "status:\n  author: {name: fleetd, email: \""+v+"\"}\n", "")
	}
	flPlus("custom roles", "clusterRoles: [ci-deployer]\n", "")
	flPlus("custom role invalid", "clusterRoles: [CI]\n", "")
	flPlus("policy", "policy: {maxDecommissionsPerSync: 2, pruneGuardPercent: 50, maxMachineChangesPerSync: 10, confirmPrune: \""+strings.Repeat("a", 40)+"\"}\n", "")
	flPlus("policy percent too large", "policy: {pruneGuardPercent: 101}\n", "")
	flPlus("policy unknown field", "policy: {prune: 1}\n", "")
	flPlus("confirmPrune short", "policy: {confirmPrune: abc}\n", "")
	flPlus("pricing unknown provider", "  aws-us:\n    instanceHourly: {m6i.large: 1}\n", "reference")
	fl("pricing bad instance type key", 46, "    instanceHourly: {M6I: 0.214, m6i.large: 0.107}", "")
	return cases
}

func TestDifferentialAgainstAjv(t *testing.T) {
	dir := os.Getenv("FLEETD_AJV_DIR")
	if dir == "" {
		if os.Getenv("FLEETD_REQUIRE_AJV") != "" {
			t.Fatal("FLEETD_REQUIRE_AJV is set but FLEETD_AJV_DIR is not: run make test")
		}
		t.Skip("Ajv is not installed: run `make test` (or `make ajv` and set FLEETD_AJV_DIR) for the differential test")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	cases := diffCorpus(t)
	type input struct {
		Name string `json:"name"`
		Kind string `json:"kind"`
		Text string `json:"text"`
	}
	in := make([]input, len(cases))
	for i, c := range cases {
		in[i] = input{c.name, c.kind, c.text}
	}
	data, _ := json.Marshal(in)
	cmd := exec.Command(node, filepath.Join("..", "hack", "ajv", "validate.js"), "jsonschema", "corpus")
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules"))
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ajv: %v\n%s", err, stderr.String())
	}
	var verdicts []struct {
		Name   string   `json:"name"`
		Valid  bool     `json:"valid"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal(out, &verdicts); err != nil || len(verdicts) != len(cases) {
		t.Fatalf("ajv output: %v (%d verdicts for %d cases)", err, len(verdicts), len(cases))
	}
	agreeValid, agreeInvalid := 0, 0
	for i, c := range cases {
		schemaErr, crossErr := judgeWithFleetd(c)
		ajv := verdicts[i]
		switch {
		case ajv.Valid == !schemaErr.HasErrors() && !ajv.Valid:
			agreeInvalid++
		case ajv.Valid == !schemaErr.HasErrors():
			agreeValid++
		default:
			t.Errorf("%s: Ajv valid=%v, fleetd schema valid=%v\n  Ajv: %v\n  fleetd: %s", c.name, ajv.Valid, !schemaErr.HasErrors(), ajv.Errors, schemaErr.Error())
			continue
		}
		// Beyond the schema, fleetd may reject only where the case says so.
		var checks []string
		for _, d := range crossErr {
			if d.Severity == SeverityError && !slices.Contains(checks, d.Check) {
				checks = append(checks, d.Check)
			}
		}
		switch {
		case c.crossFile == "" && len(checks) > 0 && !schemaErr.HasErrors():
			t.Errorf("%s: fleetd rejects it beyond the schema (%v), an unlisted difference:\n%s", c.name, checks, crossErr.Error())
		case c.crossFile != "" && !slices.Contains(checks, c.crossFile):
			t.Errorf("%s: expected fleetd's %s check to reject it; got %v:\n%s%s", c.name, c.crossFile, checks, schemaErr.Error(), crossErr.Error())
		}
	}
	t.Logf("%d cases: %d valid and %d invalid by both", len(cases), agreeValid, agreeInvalid)
	if agreeValid < 20 || agreeInvalid < 50 {
		t.Errorf("the corpus is lopsided: %d valid, %d invalid", agreeValid, agreeInvalid)
	}
}

// judgeWithFleetd loads the case in a fleet repo of otherwise valid files
// and splits the case file's diagnostics into schema-level ones and the rest.
func judgeWithFleetd(c diffCase) (schemaLevel, beyond Diagnostics) {
	p := "clusters/payments/payments-prod.yaml"
	fsys := fstest.MapFS{"fleet.yaml": {Data: []byte(baseFleet)}, p: {Data: []byte(baseCluster)}}
	if c.fleet != "" {
		fsys["fleet.yaml"] = &fstest.MapFile{Data: []byte(c.fleet)}
	}
	switch {
	case c.path != "":
		p = c.path
	case c.kind == "fleet":
		p = FleetFile
	}
	fsys[p] = &fstest.MapFile{Data: []byte(c.text)}
	_, diags := Load(fsys)
	for _, d := range diags {
		if d.Path != p && !(c.kind == "cluster" && d.Path == FleetFile && d.Check == "roles") {
			continue
		}
		if slices.Contains(schemaChecks, d.Check) {
			schemaLevel = append(schemaLevel, d)
		} else {
			beyond = append(beyond, d)
		}
	}
	return schemaLevel, beyond
}
