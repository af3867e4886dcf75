package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/fleetd/fleetd/schema"
)

func init() {
	subcommands = append(subcommands, newValidateCmd, newSchemaCmd)
}

func newValidateCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check a fleet repo and report every problem with its file, line and field",
		Long: `Validate loads the fleet repo in DIR (default .): fleet.yaml and
clusters/<team>/*.yaml. It reports every problem at once as
path:line:col: field: message and exits 0 when the fleet is valid, 1 when it
has errors (warnings alone do not fail), and 2 on usage or I/O problems.

-o gitlab writes a GitLab Code Quality report for merge requests.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := dirArg(args)
			fleet, diags, err := loadDir(dir)
			if err != nil {
				return err
			}
			if err := writeDiagnostics(cmd.OutOrStdout(), output, dir, diags); err != nil {
				return err
			}
			errs, warns := countDiags(diags)
			if output == "text" {
				switch {
				case errs > 0:
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", dir, plural(errs, "error")+", "+plural(warns, "warning"))
				default:
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: valid: %s, %s\n", dir, plural(len(fleet.Clusters), "cluster"), plural(warns, "warning"))
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

func newSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:       "schema fleet|cluster",
		Short:     "Print the JSON Schema of fleet.yaml or of a cluster file, for editors",
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
// (exit 2); problems of the fleet itself are diagnostics.
func loadDir(dir string) (*schema.Fleet, schema.Diagnostics, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, nil, usageError(fmt.Errorf("cannot read fleet repo: %w", err))
	}
	if !info.IsDir() {
		return nil, nil, usageError(fmt.Errorf("cannot read fleet repo %s: not a directory", dir))
	}
	fleet, diags := schema.Load(os.DirFS(dir))
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

func writeDiagnostics(w io.Writer, format, dir string, diags schema.Diagnostics) error {
	shown := make(schema.Diagnostics, len(diags))
	for i, d := range diags {
		d.Path = displayPath(dir, d.Path)
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
			if _, err := fmt.Fprintln(w, d.String()); err != nil {
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
		// The fingerprint leaves out the line, so an issue keeps its identity
		// when lines above it move; equal issues in one file are numbered.
		sum := sha256.Sum256([]byte(d.Path + "\x00" + d.Check + "\x00" + desc))
		fp := hex.EncodeToString(sum[:16])
		seen[fp]++
		if n := seen[fp]; n > 1 {
			sum = sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d", fp, n)))
			fp = hex.EncodeToString(sum[:16])
		}
		out = append(out, codeQualityIssue{
			Description: desc, CheckName: "fleetd/" + d.Check, Fingerprint: fp, Severity: sev,
			Location: codeQualityLocation{Path: d.Path, Lines: codeQualityLines{Begin: max(d.Line, 1)}},
		})
	}
	return out
}
