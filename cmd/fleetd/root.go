package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes shared by every command.
const (
	exitOK      = 0
	exitInvalid = 1 // the fleet is invalid (validate, plan)
	exitUsage   = 2 // bad flags or arguments, or an I/O problem
)

// exitError carries an exit code out of a command. Its message, if any, has
// already been printed or is printed by Run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// oneShotGCPercent is the GC target of every command but the daemon.
const oneShotGCPercent = 400

// usageError marks an error as a usage or I/O problem (exit 2).
func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// version is set by the linker (-X main.version=...); it falls back to the
// module version recorded in the binary.
var version = ""

func fleetdVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}

// Run runs the fleetd command line with args and returns the process exit
// code. main only wires; tests call Run directly.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	if cmd, _, err := root.Find(args); err == nil && cmd.Name() != "run" && os.Getenv("GOGC") == "" {
		// One-shot commands read thousands of small files once and exit:
		// collecting garbage less often saves a third of their CPU time for
		// some more memory. The daemon keeps Go's default.
		defer debug.SetGCPercent(debug.SetGCPercent(oneShotGCPercent))
	}
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "fleetd: %v\n", ee.err)
		}
		return ee.code
	}
	// Errors from cobra itself (unknown flags, wrong argument counts) are usage errors.
	fmt.Fprintf(stderr, "fleetd: %v\n", err)
	return exitUsage
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "fleetd",
		Short: "GitOps reconciler for fleets of Kubernetes clusters",
		Long: `fleetd makes a fleet of Kubernetes clusters match a git repository: a
fleet.yaml with fleet-wide settings and one file per cluster. In merge
requests, validate and plan show what is wrong and what a merge would do;
apply and run converge the world.`,
		Example: `  fleetd validate ./fleet
  fleetd plan --observed=status -o markdown ./fleet
  fleetd show payments-prod ./fleet
  fleetd completion bash > /etc/bash_completion.d/fleetd`,
		Version:       fleetdVersion(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	// No SetVersionTemplate: a template links text/template, whose
	// MethodByName makes the linker keep every exported method of every
	// reachable type (all 800 of the EC2 client's operations: 20 MB).
	// cobra's template-free default prints "fleetd version <version>".
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError(fmt.Errorf("%w\nRun '%s --help' for usage", err, c.CommandPath()))
	})
	for _, add := range subcommands {
		root.AddCommand(add())
	}
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Example == "" {
			c.Example = defaultExamples[c.Name()]
		}
		completeOutputFlag(c)
	}
	return root
}

// defaultExamples are the Examples sections of commands that do not set
// their own, so every command's help has one (kubectl's and flux's habit).
var defaultExamples = map[string]string{
	"plan": `  # What merging this branch would do, against the recorded status
  fleetd plan --observed=status ./fleet

  # The same as a merge-request comment
  fleetd plan --observed=status -o markdown ./fleet > plan.md`,
	"apply": `  # Converge the world to the fleet repo once
  fleetd apply ./fleet

  # Plan against the live world and change nothing
  fleetd apply --dry-run ./fleet`,
	"run": `  # Run the daemon against a fleet repo
  fleetd run --repo https://gitlab.example/platform/fleet.git`,
	"completion": `  # Load completions into the current bash session
  source <(fleetd completion bash)

  # Install them for zsh
  fleetd completion zsh > "${fpath[1]}/_fleetd"`,
}

// formatList reads the formats out of an -o flag's usage, "output format:
// text, json or gitlab", for shell completion.
var formatList = regexp.MustCompile(`format[s]?: ([a-z, ]+(?: or [a-z]+)?)`)

// completeOutputFlag completes a command's -o values from its usage text.
func completeOutputFlag(c *cobra.Command) {
	f := c.Flags().Lookup("output")
	if f == nil {
		return
	}
	if _, ok := c.GetFlagCompletionFunc("output"); ok {
		return
	}
	var formats []string
	for _, m := range formatList.FindAllStringSubmatch(f.Usage, -1) {
		for _, w := range strings.FieldsFunc(strings.ReplaceAll(m[1], " or ", ","), func(r rune) bool { return r == ',' || r == ' ' }) {
			if !slices.Contains(formats, w) {
				formats = append(formats, w)
			}
		}
	}
	_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
}

// subcommands lists the constructors of fleetd's commands; each command's
// file adds its own in an init function.
var subcommands []func() *cobra.Command

func init() {
	subcommands = append(subcommands, func() *cobra.Command {
		var output string
		cmd := &cobra.Command{
			Use:   "version",
			Short: "Print fleetd's version",
			Example: `  fleetd version
  fleetd version -o json
  fleetd --version`,
			Args: cobra.NoArgs,
			PreRunE: func(*cobra.Command, []string) error {
				return checkFormat(output, "text", "json")
			},
			RunE: func(cmd *cobra.Command, _ []string) error {
				if output == "json" {
					b, err := json.Marshal(versionInfo{Version: fleetdVersion(), Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH})
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
					return err
				}
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "fleetd %s\n", fleetdVersion())
				return err
			},
		}
		cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
		return cmd
	})
}

// versionInfo is version -o json.
type versionInfo struct {
	Version  string `json:"version"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}
