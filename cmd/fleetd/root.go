package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fleetd/fleetd/internal/daemon"
	"github.com/fleetd/fleetd/internal/fleetsync"
	"github.com/fleetd/fleetd/internal/live"
	"github.com/fleetd/fleetd/internal/metrics"
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

// daemonGCPercent is fleetd run's GC target (GOGC overrides both).
const daemonGCPercent = 50

// usageError marks an error as a usage or I/O problem (exit 2).
func usageError(err error) error { return &exitError{code: exitUsage, err: err} }

// version is set by the linker (-X main.version=...); it falls back to the
// module version recorded in the binary.
var version = ""

func fleetdVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return versionOf(info)
}

// buildRevision is the commit the binary was built from ("unknown" when the
// build did not record it).
func buildRevision() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// versionOf is the version a build records: its module version, else the
// commit a plain `go build` in a clone was built from.
func versionOf(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	// A plain `go build` in a clone: the commit it was built from.
	var rev string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "devel-" + rev
}

// wiring is what fleetd's commands take from outside the command line:
// main wires the live world and the sync loop, tests wire simulators and
// fakes. No package variable stands in for any of it.
type wiring struct {
	// world builds the live world for apply, plan --observed=live and run
	// (live.World).
	world fleetsync.WorldFunc
	// syncer builds run's sync loop on world (loopSyncer).
	syncer func(ctx context.Context, cfg RunConfig, m *metrics.Metrics, log *slog.Logger, world fleetsync.WorldFunc) (daemon.Syncer, error)
	// onListen, when set, is told the address run's server listens on.
	onListen func(net.Addr)
}

// logFlags are the log flags of a one-shot command (apply, plan): its
// result goes to stdout, and only warnings and errors to stderr unless -v.
type logFlags struct {
	level   string
	verbose bool
}

func (f *logFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.level, "log-level", "warn", "least severe log lines written to stderr: debug, info, warn or error")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log what the sync does on stderr (--log-level=info)")
}

// logger returns the command's logger on stderr.
func (f *logFlags) logger(stderr io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.level)); err != nil {
		return nil, usageError(fmt.Errorf("--log-level %q: want debug, info, warn or error", f.level))
	}
	if f.verbose && lvl > slog.LevelInfo {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})), nil
}

// liveWiring is what main runs: the live world and the one sync loop.
func liveWiring() *wiring { return &wiring{world: live.World, syncer: loopSyncer} }

// Run runs the fleetd command line with args on the live world and returns
// the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, liveWiring(), args, stdout, stderr)
}

// runWith is Run with w's world and sync loop.
func runWith(ctx context.Context, w *wiring, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(w, stdout, stderr)
	root.SetArgs(args)
	if cmd, _, err := root.Find(args); err == nil && os.Getenv("GOGC") == "" {
		if cmd.Name() != "run" {
			// One-shot commands read thousands of small files once and
			// exit: collecting garbage less often saves a third of their
			// CPU time for some more memory.
			defer debug.SetGCPercent(debug.SetGCPercent(oneShotGCPercent))
		} else {
			// The daemon keeps what it needs between syncs (a few hundred
			// MB at 10,000 clusters) and makes as much garbage in each:
			// collecting at half of Go's default growth keeps its peak
			// near 1.5 × what it keeps, not 2 ×, for some CPU.
			defer debug.SetGCPercent(debug.SetGCPercent(daemonGCPercent))
		}
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

func newRootCmd(w *wiring, stdout, stderr io.Writer) *cobra.Command {
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
		root.AddCommand(add(w))
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
var subcommands []func(*wiring) *cobra.Command

func init() {
	subcommands = append(subcommands, func(*wiring) *cobra.Command {
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
