package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	fgit "github.com/fleetd/fleetd/internal/git"
	"github.com/fleetd/fleetd/reconcile"
	"github.com/fleetd/fleetd/schema"
)

func init() {
	subcommands = append(subcommands, newValidateCmd, newSchemaCmd)
}

func newValidateCmd(*wiring) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check a fleet repo and report every problem with its file, line and field",
		Long: `Validate loads the fleet repo in DIR (default .): fleet.yaml and
clusters/<team>/*.yaml. It reports every problem at once as
path:line:col: field: message and exits 0 when the fleet is valid, 1 when it
has errors (warnings alone do not fail), and 2 on usage or I/O problems.

-o json writes the problems as a JSON list; -o gitlab writes a GitLab Code
Quality report (paths relative to the git repository's root, fingerprints
that survive unrelated edits). Both write [] when nothing could be read.

In a git clone, a cluster name declared twice is reported on the file that
git history added later; outside git, on the later path. A fleet repo may
hold at most 20000 files under clusters/.`,
		Example: `  # Validate the fleet repo in the current folder
  fleetd validate

  # Validate another checkout and print a GitLab Code Quality report
  fleetd validate -o gitlab ./fleet > gl-code-quality-report.json

  # With the container image, from the root of a fleet repo
  docker run --rm -v "$PWD:/fleet" -w /fleet fleetd validate`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := dirArg(args)
			fleet, diags, err := loadDir(dir)
			if err != nil {
				if output != "text" {
					// CI parses stdout: it stays valid JSON.
					_, _ = fmt.Fprintln(cmd.OutOrStdout(), "[]")
				}
				return err
			}
			if err := writeDiagnostics(cmd.OutOrStdout(), output, dir, diags); err != nil {
				return err
			}
			errs, warns := countDiags(diags)
			if output == "text" {
				switch {
				case errs > 0:
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", reconcile.EscapeText(dir), plural(errs, "error")+", "+plural(warns, "warning"))
				default:
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: valid: %s, %s\n", reconcile.EscapeText(dir), plural(len(fleet.Clusters), "cluster"), plural(warns, "warning"))
				}
			}
			if errs > 0 {
				return &exitError{code: exitInvalid}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or gitlab")
	cmd.PreRunE = func(*cobra.Command, []string) error { return checkFormat(output, "text", "json", "gitlab") }
	return cmd
}

func newSchemaCmd(*wiring) *cobra.Command {
	return &cobra.Command{
		Use:   "schema fleet|cluster",
		Short: "Print the JSON Schema of fleet.yaml or of a cluster file, for editors",
		Long: `Schema prints the JSON Schema (draft 2020-12) that fleetd validates
fleet.yaml or cluster files against, for editors and the YAML language
server. Commit them (for example to .schemas/) and point files at them with
a "# yaml-language-server: $schema=..." comment.`,
		Example: `  fleetd schema fleet > .schemas/fleet.schema.json
  fleetd schema cluster > .schemas/cluster.schema.json`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"fleet", "cluster"},
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := schema.JSONSchema(args[0])
			if err != nil {
				return usageError(err)
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
}

func dirArg(args []string) string {
	if len(args) == 0 {
		return "."
	}
	return filepath.Clean(args[0])
}

// loadDir loads the fleet repo in dir. An error is a usage or I/O problem
// (exit 2); problems of the fleet itself are diagnostics. In a git clone,
// the history says which file declared a cluster name first.
func loadDir(dir string) (*schema.Fleet, schema.Diagnostics, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, nil, usageError(fmt.Errorf("cannot read fleet repo: %w", err))
	}
	if !info.IsDir() {
		return nil, nil, usageError(fmt.Errorf("cannot read fleet repo %s: not a directory", dir))
	}
	var opts []schema.Option
	if created, err := fgit.LocalCreationTimes(context.Background(), dir, schema.ClustersDir); err == nil {
		opts = append(opts, schema.WithCreationTimes(created))
	}
	fleet, diags := schema.Load(os.DirFS(dir), opts...)
	for _, d := range diags {
		// A fleet repo that cannot be read at all is an I/O problem, not a
		// defect in the fleet.
		if d.Path == "." && d.Check == "layout" {
			return nil, nil, usageError(errors.New(d.Message))
		}
	}
	return fleet, diags, nil
}

func checkFormat(got string, allowed ...string) error {
	for _, a := range allowed {
		if got == a {
			return nil
		}
	}
	return usageError(fmt.Errorf("unknown output format %q: want one of %v", got, allowed))
}

func countDiags(ds schema.Diagnostics) (errs, warns int) {
	for _, d := range ds {
		if d.Severity == schema.SeverityError {
			errs++
		} else {
			warns++
		}
	}
	return errs, warns
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// displayPath makes a diagnostic's repo-relative path relative to where the
// command runs, so editors and CI can open it.
func displayPath(dir, p string) string {
	if dir == "." || dir == "" {
		return p
	}
	return path.Join(filepath.ToSlash(dir), p)
}

// repoPath makes a diagnostic's path relative to the root of the git
// repository that holds dir (GitLab resolves report paths from there), or
// to dir itself outside git, whether dir is relative or absolute.
func repoPath(dir, p string) string {
	root := fgit.LocalRoot(dir)
	if root == "" {
		return p
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return p
	}
	rel, err := filepath.Rel(root, abs)
	if err != nil || strings.HasPrefix(rel, "..") {
		return p
	}
	return path.Join(filepath.ToSlash(rel), p)
}

func writeDiagnostics(w io.Writer, format, dir string, diags schema.Diagnostics) error {
	shown := make(schema.Diagnostics, len(diags))
	for i, d := range diags {
		if format == "gitlab" {
			d.Path = repoPath(dir, d.Path)
		} else {
			d.Path = displayPath(dir, d.Path)
		}
		shown[i] = d
	}
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(shown)
	case "gitlab":
		return json.NewEncoder(w).Encode(codeQuality(shown))
	default:
		for _, d := range shown {
			// File names and values come from the repo: no control
			// character reaches the terminal.
			if _, err := fmt.Fprintln(w, reconcile.EscapeText(d.String())); err != nil {
				return err
			}
		}
		return nil
	}
}

// codeQualityIssue is one entry of a GitLab Code Quality report.
type codeQualityIssue struct {
	Description string              `json:"description"`
	CheckName   string              `json:"check_name"`
	Fingerprint string              `json:"fingerprint"`
	Severity    string              `json:"severity"`
	Location    codeQualityLocation `json:"location"`
}

type codeQualityLocation struct {
	Path  string           `json:"path"`
	Lines codeQualityLines `json:"lines"`
}

type codeQualityLines struct {
	Begin int `json:"begin"`
}

// lineRefs matches what a message says about lines elsewhere: "line 12",
// "lines 3 and 4", ":12:3" after a path.
var lineRefs = regexp.MustCompile(`\blines? [0-9]+( and [0-9]+)?|:[0-9]+:[0-9]+\b`)

func codeQuality(diags schema.Diagnostics) []codeQualityIssue {
	out := make([]codeQualityIssue, 0, len(diags))
	seen := map[string]int{}
	for _, d := range diags {
		desc := d.Message
		if d.Field != "" {
			desc = d.Field + ": " + d.Message
		}
		sev := "major"
		if d.Severity == schema.SeverityWarning {
			sev = "minor"
		}
		// The fingerprint leaves out every line number, the issue's own and
		// those its message quotes, so an issue keeps its identity when
		// unrelated lines move; equal issues in one file are numbered.
		sum := sha256.Sum256([]byte(d.Path + "\x00" + d.Check + "\x00" + lineRefs.ReplaceAllString(desc, "")))
		fp := hex.EncodeToString(sum[:16])
		seen[fp]++
		if n := seen[fp]; n > 1 {
			sum = sha256.Sum256(fmt.Appendf(nil, "%s\x00%d", fp, n))
			fp = hex.EncodeToString(sum[:16])
		}
		out = append(out, codeQualityIssue{
			Description: desc, CheckName: "fleetd/" + d.Check, Fingerprint: fp, Severity: sev,
			Location: codeQualityLocation{Path: d.Path, Lines: codeQualityLines{Begin: max(d.Line, 1)}},
		})
	}
	return out
}
