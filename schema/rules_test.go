package schema

import (
	"math"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// TestLoadRules pins the checks that make the editor, CI and fleetd agree and
// that lead each message to the fix: YAML 1.2 numbers, maxima, exactly-one-of
// rules in the schema, roles, ttl bounds.
func TestLoadRules(t *testing.T) {
	cf := "clusters/payments/payments-prod.yaml"
	cluster := func(extra string) map[string]string {
		return map[string]string{cf: baseCluster + extra}
	}
	fleetPlus := func(extra string) map[string]string {
		return map[string]string{"fleet.yaml": baseFleet + extra}
	}
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"YAML 1.1 underscore number is text in YAML 1.2", cluster("pools:\n  - name: workers\n    replicas: 1_1\n"),
			[]string{cf + `:9:15: pools[0].replicas: expected integer, got the text "1_1": YAML 1.2 (editors, CI and fleetd) reads it as text, not a number; write 11`}},
		{"YAML 1.1 binary number", cluster("pools:\n  - name: workers\n    replicas: 0b11\n"),
			[]string{cf + `:9:15: pools[0].replicas: expected integer, got the text "0b11"` + "", cf + ""}[:1]},
		{"ttl beyond ten years", cluster("ttl: 3651d\n"),
			[]string{cf + `:7:6: ttl: "3651d" is too long: a ttl is at most 3650 days (87600h, 5256000m)`}},
		{"ttl that overflows a duration", cluster("ttl: 999999999d\n"),
			[]string{cf + `:7:6: ttl: "999999999d" is too long: a ttl is at most 3650 days`}},
		{"ttl in hours beyond ten years", cluster("ttl: 87601h\n"),
			[]string{cf + `:7:6: ttl: "87601h" is too long`}},
		{"absurd price", map[string]string{"fleet.yaml": replaceLine(baseFleet, 46, "    instanceHourly: {m6i.xlarge: 1.7e308, m6i.large: 0.107}")},
			[]string{`fleet.yaml:46:34: pricing.aws-eu.instanceHourly["m6i.xlarge"]: 1.7e+308 is too large: the maximum is 1000000`}},
		{"absurd vsphere price", map[string]string{"fleet.yaml": replaceLine(baseFleet, 48, "    cpuHourly: 2e6")},
			[]string{`fleet.yaml:48:16: pricing.dc1.cpuHourly: 2000000 is too large: the maximum is 1000000`}},
		{"absurd budget", map[string]string{"fleet.yaml": replaceLine(baseFleet, 25, "  - name: qa\n    budgetMonthly: 1e13")},
			[]string{`fleet.yaml:26:20: teams[1].budgetMonthly: 10000000000000 is too large: the maximum is 1000000000000`}},
		{"infinite price", map[string]string{"fleet.yaml": replaceLine(baseFleet, 48, "    cpuHourly: .inf")},
			[]string{`fleet.yaml:48:16: pricing.dc1.cpuHourly: .inf is not a finite number`}},
		{"access with neither group nor team", cluster("access:\n  - role: cluster-owner\n"),
			[]string{cf + ":8:5: access[0]: an access entry names exactly one of group (an LDAP DN) and team"}},
		{"unknown role with suggestion", cluster("access:\n  - team: payments\n    role: cluster-ownr\n"),
			[]string{cf + `:9:11: access[0].role: unknown cluster role "cluster-ownr" (did you mean "cluster-owner"?)`}},
		{"role owner is not a Rancher role", cluster("access:\n  - team: payments\n    role: owner\n"),
			[]string{cf + `:9:11: access[0].role: unknown cluster role "owner"`}},
		{"role checked on an entry that is wrong otherwise too", cluster("access:\n  - team: payments\n    group: cn=x,dc=y\n    role: owner\n"),
			[]string{cf + ":8:5: access[0]: an access entry names exactly one of group (an LDAP DN) and team", cf + `:10:11: access[0].role: unknown cluster role "owner"`}},
		{"custom role declared in fleet.yaml", map[string]string{
			"fleet.yaml": baseFleet + "clusterRoles: [ci-deployer]\n",
			cf:           baseCluster + "access:\n  - team: payments\n    role: ci-deployer\n"}, nil},
		{"aws provider with a vsphere block", map[string]string{"fleet.yaml": replaceLine(baseFleet, 10, "      image: ami-0abcdef1234567890\n    vsphere: {}")},
			[]string{"fleet.yaml:11:5: providers[0].vsphere: a provider of type aws takes no vsphere block"}},
		{"vsphere provider without its block", map[string]string{"fleet.yaml": strings.Replace(baseFleet, "    vsphere:\n      server", "    vsfere:\n      server", 1)},
			[]string{"fleet.yaml:12:11: providers[1].vsphere: a provider of type vsphere needs a vsphere block", "fleet.yaml:13:5: providers[1].vsfere: unknown field"}},
		{"branch component with a dot", fleetPlus("status:\n  branch: a/.b\n"),
			[]string{`fleet.yaml:51:11: status.branch: "a/.b" is not a valid branch name: a component starts with '.'`}},
		{"hidden yaml file", map[string]string{"clusters/payments/.old.yaml": baseCluster},
			[]string{"clusters/payments/.old.yaml: hidden files are not loaded: rename it to old.yaml"}},
		{"gitkeep in a team folder", map[string]string{"clusters/qa/.gitkeep": "\n", "clusters/.gitkeep": "\n"}, nil},
		{"even etcd from an override is reported at the override", cluster("pools:\n  - name: control\n    replicas: 2\n"),
			[]string{cf + ":9:15: pools[0].replicas: the cluster has 2 etcd members"}},
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

// TestYAML12Numbers checks that plain scalars read as YAML 1.2's core schema
// reads them, the way editors and JSON tools do.
func TestYAML12Numbers(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{"010", int64(10)}, {"0o12", int64(10)}, {"0x0A", int64(10)}, {"+7", int64(7)}, {"-3", int64(-3)},
		{"1_1", "1_1"}, {"0b11", "0b11"}, {"+0x10", "+0x10"}, {"1:30", "1:30"}, {"0o", "0o"},
		{"1.5", 1.5}, {"1.", 1.0}, {".5", 0.5}, {"1e3", 1000.0}, {"1E-1", 0.1},
		{"yes", "yes"}, {"on", "on"}, {"y", "y"}, {"True", true}, {"FALSE", false},
		{"~", nil}, {"Null", nil}, {"", nil}, {"2024-01-01", "2024-01-01"},
		{"'010'", "010"}, {`"1_1"`, "1_1"}, {"!!int 010", int64(10)}, {"!!str 10", "10"},
	}
	for _, tt := range tests {
		doc, perr := parseDocument("x.yaml", []byte("v: "+tt.in+"\n"))
		if perr != nil {
			t.Errorf("%s: %v", tt.in, perr)
			continue
		}
		if got := doc.root.(map[string]any)["v"]; got != tt.want {
			t.Errorf("%s: read as %#v, want %#v", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{".inf", "-.Inf", ".nan", "!!int 1_1", "!!float abc", "99999999999999999999"} {
		if _, perr := parseDocument("x.yaml", []byte("v: "+bad+"\n")); perr == nil {
			t.Errorf("%s: accepted, want an error", bad)
		}
	}
	if _, perr := parseDocument("x.yaml", []byte("v: !!int 1_1\n")); perr == nil || !strings.Contains(perr.msg, "write 11") {
		t.Errorf("!!int 1_1: %v, want a message with the plain form", perr)
	}
}

func TestParseTTL(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90m", 90 * time.Minute, true}, {"48h", 48 * time.Hour, true}, {"7d", 7 * 24 * time.Hour, true},
		{"3650d", 3650 * 24 * time.Hour, true}, {"87600h", 87600 * time.Hour, true}, {"5256000m", 5256000 * time.Minute, true},
		{"3651d", 0, false}, {"87601h", 0, false}, {"5256001m", 0, false}, {"999999999d", 0, false},
		{"99999999999999999999d", 0, false}, {"0d", 0, false}, {"7w", 0, false}, {"d", 0, false}, {"-1d", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseTTL(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseTTL(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestEvenEtcdClassReportedOnce checks that a class with an even etcd count
// is one diagnostic at the class, naming the clusters that inherit it, and
// that those clusters are held.
func TestEvenEtcdClassReportedOnce(t *testing.T) {
	fsys := withFiles(map[string]string{
		"fleet.yaml":              replaceLine(baseFleet, 38, "        replicas: 2"),
		"clusters/qa/qa-one.yaml": strings.NewReplacer("payments-prod", "qa-one", "team: payments", "team: qa").Replace(baseCluster),
		"clusters/qa/qa-odd.yaml": strings.NewReplacer("payments-prod", "qa-odd", "team: payments", "team: qa").Replace(baseCluster) +
			"pools:\n  - name: control\n    replicas: 3\n",
	})
	fleet, diags := Load(fsys)
	if len(diags) != 1 {
		t.Fatalf("got %d diagnostics, want 1:\n%s", len(diags), diags.Error())
	}
	if d := diags[0]; d.Path != FleetFile || d.Line != 33 || !strings.HasSuffix(d.Message, "held: payments-prod, qa-one") {
		t.Errorf("diagnostic = %s", d)
	}
	if fleet == nil || len(fleet.Clusters) != 1 || fleet.Clusters[0].Spec.Name != "qa-odd" || len(fleet.Rejected) != 2 {
		t.Fatalf("fleet = %+v", fleet)
	}
	for _, r := range fleet.Rejected {
		if len(r.Diagnostics) != 1 || r.Diagnostics[0].Path != FleetFile {
			t.Errorf("rejected %s: %s", r.Path, r.Diagnostics.Error())
		}
	}
}

// TestDuplicateNameOnTheLaterFile checks that a duplicate cluster name is
// reported on the file added later in git history, and on the later path
// without history.
func TestDuplicateNameOnTheLaterFile(t *testing.T) {
	older, newer := "clusters/payments/zz-first.yaml", "clusters/payments/aa-second.yaml"
	fsys := fstest.MapFS{
		"fleet.yaml": {Data: []byte(baseFleet)},
		older:        {Data: []byte(baseCluster)},
		newer:        {Data: []byte(baseCluster)},
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		opts []Option
		dup  string
	}{
		{"path order without history", nil, older},
		{"git history", []Option{WithCreationTimes(map[string]time.Time{older: t0, newer: t0.Add(time.Hour)})}, newer},
		{"uncommitted file is newest", []Option{WithCreationTimes(map[string]time.Time{older: t0})}, newer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Load(fsys, tt.opts...)
			var got []string
			for _, d := range diags {
				if d.Check == "duplicate-name" {
					got = append(got, d.Path)
				}
			}
			if len(got) != 1 || got[0] != tt.dup {
				t.Errorf("duplicate reported on %v, want %s:\n%s", got, tt.dup, diags.Error())
			}
		})
	}
}

// TestTooManyClusterFiles checks that a fleet beyond MaxClusterFiles is
// refused whole, with one diagnostic, before any file is parsed.
func TestTooManyClusterFiles(t *testing.T) {
	fsys := fstest.MapFS{"fleet.yaml": {Data: []byte(baseFleet)}}
	for i := range MaxClusterFiles + 1 {
		fsys["clusters/qa/"+strings.Repeat("x", 1)+itoa(i)+".yaml"] = &fstest.MapFile{Data: []byte("not: [valid")}
	}
	fleet, diags := Load(fsys)
	if fleet != nil || len(diags) != 1 || diags[0].Check != "limit" {
		t.Fatalf("fleet = %v, diagnostics:\n%.500s", fleet, diags.Error())
	}
}

func itoa(i int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(i)) }

func fmtInt(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestNumberProblem(t *testing.T) {
	tests := []struct {
		v, max float64
		want   string
	}{
		{0.214, MaxHourlyPrice, ""}, {0, MaxHourlyPrice, ""}, {MaxHourlyPrice, MaxHourlyPrice, ""},
		{1.7e308, MaxHourlyPrice, "1.7e+308 is too large: the maximum is 1000000"},
		{math.Inf(1), MaxHourlyPrice, "is not a finite number"}, {math.NaN(), MaxBudgetMonthly, "is not a finite number"},
		{-1, MaxBudgetMonthly, "is negative"}, {2e12, MaxBudgetMonthly, "2e+12 is too large: the maximum is 1000000000000"},
	}
	for _, tt := range tests {
		if got := numberProblem(tt.v, tt.max); got != tt.want {
			t.Errorf("numberProblem(%v, %v) = %q, want %q", tt.v, tt.max, got, tt.want)
		}
	}
}
