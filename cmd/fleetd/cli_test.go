package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// gitlabIssues runs validate -o gitlab and decodes the report.
func gitlabIssues(t *testing.T, args ...string) (int, []codeQualityIssue) {
	t.Helper()
	code, stdout, stderr := runCLI(t, append([]string{"validate", "-o", "gitlab"}, args...)...)
	var report []codeQualityIssue
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("stdout is not JSON (%v): %q; stderr %s", err, stdout, stderr)
	}
	return code, report
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func gitCmd(t *testing.T, dir string, when time.Time, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_DATE="+when.Format(time.RFC3339), "GIT_COMMITTER_DATE="+when.Format(time.RFC3339),
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example",
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func TestGitLabReportPathsAreRelativeToTheRepoRoot(t *testing.T) {
	// Outside git, an absolute DIR: paths are relative to DIR.
	dir := exampleRepo(t)
	writeFile(t, filepath.Join(dir, "clusters/qa/qa-pr-77.yaml"), "apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: qa-pr-77\nteam: qa\nprovider: aws-eu\nclass: singel\n")
	abs, _ := filepath.Abs(dir)
	_, report := gitlabIssues(t, abs)
	if len(report) == 0 || report[0].Location.Path != "clusters/qa/qa-pr-77.yaml" {
		t.Errorf("outside git: %+v", report)
	}
	// The fleet in a folder of a git repository: paths from the git root.
	root := t.TempDir()
	fleet := filepath.Join(root, "fleets", "eu")
	if err := os.Rename(dir, fleet); err != nil {
		if err := os.MkdirAll(filepath.Dir(fleet), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dir, fleet); err != nil {
			t.Fatal(err)
		}
	}
	gitCmd(t, root, time.Now(), "init", "-q")
	_, report = gitlabIssues(t, fleet)
	if len(report) == 0 || report[0].Location.Path != "fleets/eu/clusters/qa/qa-pr-77.yaml" {
		t.Errorf("in a git repo: %+v", report)
	}
}

func TestGitLabFingerprintsIgnoreLineNumbers(t *testing.T) {
	dir := exampleRepo(t)
	dup := "apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: qa-pr-77\nteam: qa\nprovider: aws-eu\nclass: single\n"
	writeFile(t, filepath.Join(dir, "clusters/qa/zz-copy.yaml"), dup)
	_, before := gitlabIssues(t, dir)
	// Unrelated lines move the original's name down: the message quotes
	// the new line, the fingerprint stays.
	p := filepath.Join(dir, "clusters/qa/qa-pr-77.yaml")
	data, _ := os.ReadFile(p)
	writeFile(t, p, "# a comment\n# another\n"+string(data))
	_, after := gitlabIssues(t, dir)
	fp := func(r []codeQualityIssue) (string, string) {
		for _, i := range r {
			if i.CheckName == "fleetd/duplicate-name" {
				return i.Fingerprint, i.Description
			}
		}
		return "", ""
	}
	f1, d1 := fp(before)
	f2, d2 := fp(after)
	if f1 == "" || d1 == d2 || f1 != f2 {
		t.Errorf("fingerprints %q (%s) and %q (%s): want equal and non-empty while the message changes", f1, d1, f2, d2)
	}
}

func TestMachineReadableOutputOnIOError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	for _, format := range []string{"json", "gitlab"} {
		code, stdout, _ := runCLI(t, "validate", "-o", format, missing)
		if code != 2 || strings.TrimSpace(stdout) != "[]" {
			t.Errorf("-o %s on a missing DIR: exit %d, stdout %q; want 2 and []", format, code, stdout)
		}
	}
}

func TestControlCharactersAreEscaped(t *testing.T) {
	dir := exampleRepo(t)
	writeFile(t, filepath.Join(dir, "clusters/qa/evil\x1b[2J.yaml"), "kind: Cluster\n")
	code, stdout, _ := runCLI(t, "validate", dir)
	if code != 1 || strings.Contains(stdout, "\x1b") || !strings.Contains(stdout, `evil\x1b[2J.yaml`) {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
}

func TestDuplicateNameFollowsGitHistory(t *testing.T) {
	dir := exampleRepo(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	gitCmd(t, dir, t0, "init", "-q")
	gitCmd(t, dir, t0, "add", "-A")
	gitCmd(t, dir, t0, "commit", "-qm", "fleet")
	// A later commit adds a file whose path sorts first with a taken name.
	writeFile(t, filepath.Join(dir, "clusters/qa/aa-new.yaml"),
		"apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: qa-pr-77\nteam: qa\nprovider: aws-eu\nclass: single\n")
	gitCmd(t, dir, t0.Add(time.Hour), "add", "-A")
	gitCmd(t, dir, t0.Add(time.Hour), "commit", "-qm", "copy")
	code, stdout, _ := runCLI(t, "validate", dir)
	if code != 1 || !strings.Contains(stdout, "clusters/qa/aa-new.yaml:3:7: name: duplicate cluster name") {
		t.Errorf("exit %d:\n%s", code, stdout)
	}
}

func TestShow(t *testing.T) {
	code, stdout, stderr := runCLI(t, "show", "payments-prod", "../../examples/fleet-repo")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(stdout), &node); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := 0; i < len(node.Content[0].Content); i += 2 {
		keys = append(keys, node.Content[0].Content[i].Value)
	}
	// The cluster schema's order, apiVersion and kind first.
	if got := strings.Join(keys[:8], ","); got != "apiVersion,kind,name,team,provider,providerType,class,kubernetesVersion" {
		t.Errorf("keys: %v", keys)
	}
	code, stdout, _ = runCLI(t, "show", "payments-prod", "../../examples/fleet-repo", "-o", "json")
	var js map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &js) != nil || js["kind"] != KindEffectiveCluster || js["apiVersion"] != "fleetd.io/v1alpha1" {
		t.Errorf("-o json: exit %d, %s", code, stdout)
	}
	code, _, stderr = runCLI(t, "show", "pay-prod", "../../examples/fleet-repo")
	if code != 1 || !strings.Contains(stderr, `did you mean "payments-prod"?`) {
		t.Errorf("unknown cluster: exit %d, %s", code, stderr)
	}
	code, _, _ = runCLI(t, "show", "payments-prod", "../../examples/fleet-repo", "-o", "table")
	if code != 2 {
		t.Errorf("-o table without --all: exit %d, want 2", code)
	}
}

func TestShowAllWithInvalidClusters(t *testing.T) {
	dir := exampleRepo(t)
	writeFile(t, filepath.Join(dir, "clusters/qa/qa-pr-77.yaml"), "apiVersion: fleetd.io/v1alpha1\nkind: Cluster\nname: qa-pr-77\nteam: qa\nprovider: aws-eu\nclass: singel\n")
	code, stdout, stderr := runCLI(t, "show", "--all", dir)
	if code != 1 || !strings.Contains(stdout, "INVALID: clusters/qa/qa-pr-77.yaml") ||
		!strings.Contains(stdout, "fleet (excluding 1 invalid cluster)") || !strings.Contains(stderr, "left out of the totals") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr: %s", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, "show", "--all", "-o", "json", dir)
	var list shownList
	if code != 1 || json.Unmarshal([]byte(stdout), &list) != nil || len(list.Invalid) != 1 || len(list.Items) != 8 {
		t.Errorf("-o json: exit %d, %+v", code, list)
	}
}

func TestCLIConventions(t *testing.T) {
	code, stdout, _ := runCLI(t, "--version")
	if code != 0 || !strings.HasPrefix(stdout, "fleetd ") {
		t.Errorf("--version: exit %d, %q", code, stdout)
	}
	code, stdout, _ = runCLI(t, "version", "-o", "json")
	var v versionInfo
	if code != 0 || json.Unmarshal([]byte(stdout), &v) != nil || v.Version == "" || v.Go == "" {
		t.Errorf("version -o json: exit %d, %q", code, stdout)
	}
	// Every command's help has an Examples section.
	root := newRootCmd(liveWiring(), nil, nil)
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			continue
		}
		if c.Example == "" {
			t.Errorf("%s: no Examples in its help", c.Name())
		}
	}
	// Shell completion: commands, -o values, cluster names.
	code, stdout, _ = runCLI(t, "__complete", "")
	if code != 0 || !strings.Contains(stdout, "validate") || !strings.Contains(stdout, "completion") {
		t.Errorf("command completion: %q", stdout)
	}
	code, stdout, _ = runCLI(t, "__complete", "validate", "-o", "")
	if code != 0 || !strings.Contains(stdout, "gitlab\n") {
		t.Errorf("-o completion: %q", stdout)
	}
	t.Chdir("../../examples/fleet-repo")
	code, stdout, _ = runCLI(t, "__complete", "show", "pay")
	if code != 0 || !strings.Contains(stdout, "payments-prod") {
		t.Errorf("cluster name completion: %q", stdout)
	}
}

// TestVersionOfAPlainBuild: `go build` in a clone records the commit, and
// fleetd version says it instead of a bare "devel".
func TestVersionOfAPlainBuild(t *testing.T) {
	info := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.modified", Value: "true"}}}
	if got := versionOf(info); got != "devel-0123456789ab-dirty" {
		t.Errorf("version %q", got)
	}
	info.Main.Version = "v0.3.0"
	if got := versionOf(info); got != "v0.3.0" {
		t.Errorf("version %q", got)
	}
	if got := versionOf(&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}); got != "devel" {
		t.Errorf("version %q", got)
	}
}
