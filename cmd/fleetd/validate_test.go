package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValidateExitCodes(t *testing.T) {
	broken := exampleRepo(t)
	bad := filepath.Join(broken, "clusters/qa/qa-pr-77.yaml")
	data, _ := os.ReadFile(bad)
	if err := os.WriteFile(bad, bytes.Replace(data, []byte("ttl: 48h"), []byte("ttl: 2 days"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		code     int
		inStdout string
	}{
		{"valid example", []string{"validate", "../../examples/fleet-repo"}, 0, ""},
		{"invalid fleet", []string{"validate", broken}, 1, "clusters/qa/qa-pr-77.yaml:10:6: ttl:"},
		{"missing directory", []string{"validate", filepath.Join(t.TempDir(), "nope")}, 2, ""},
		{"bad format", []string{"validate", "-o", "xml", "../../examples/fleet-repo"}, 2, ""},
		{"unknown flag", []string{"validate", "--bogus"}, 2, ""},
		{"too many args", []string{"validate", "a", "b"}, 2, ""},
		{"schema", []string{"schema", "cluster"}, 0, `"$schema"`},
		{"unknown schema", []string{"schema", "machine"}, 2, ""},
		{"show", []string{"show", "qa-pr-77", "../../examples/fleet-repo"}, 0, "ttl: 48h"},
		{"show unknown", []string{"show", "nope", "../../examples/fleet-repo"}, 1, ""},
		{"show all with cost", []string{"show", "--all", "../../examples/fleet-repo"}, 0, "8976.81"},
		{"version", []string{"version"}, 0, "fleetd "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.inStdout) {
				t.Errorf("stdout %q does not contain %q", stdout, tt.inStdout)
			}
		})
	}
}

func TestValidateGitLabReport(t *testing.T) {
	dir := exampleRepo(t)
	p := filepath.Join(dir, "clusters/qa/qa-pr-77.yaml")
	data, _ := os.ReadFile(p)
	if err := os.WriteFile(p, bytes.Replace(data, []byte("class: single"), []byte("class: singel"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "validate", "-o", "gitlab", dir)
	if code != 1 {
		t.Fatalf("exit %d, stderr %s", code, stderr)
	}
	var report []struct {
		Description string `json:"description"`
		CheckName   string `json:"check_name"`
		Fingerprint string `json:"fingerprint"`
		Severity    string `json:"severity"`
		Location    struct {
			Path  string `json:"path"`
			Lines struct {
				Begin int `json:"begin"`
			} `json:"lines"`
		} `json:"location"`
	}
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if len(report) != 1 {
		t.Fatalf("report = %+v", report)
	}
	r := report[0]
	if !strings.HasSuffix(r.Location.Path, "clusters/qa/qa-pr-77.yaml") || r.Location.Lines.Begin != 7 ||
		r.Severity != "major" || r.CheckName != "fleetd/reference" || len(r.Fingerprint) != 32 ||
		!strings.Contains(r.Description, `class: unknown class "singel" (did you mean "single"?)`) {
		t.Errorf("issue = %+v", r)
	}
}
