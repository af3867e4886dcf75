package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"

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
		Use:           "fleetd",
		Short:         "GitOps reconciler for fleets of Kubernetes clusters",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError(fmt.Errorf("%w\nRun '%s --help' for usage", err, c.CommandPath()))
	})
	for _, add := range subcommands {
		root.AddCommand(add())
	}
	return root
}

// subcommands lists the constructors of fleetd's commands; each command's
// file adds its own in an init function.
var subcommands []func() *cobra.Command

func init() {
	subcommands = append(subcommands, func() *cobra.Command {
		return &cobra.Command{
			Use:   "version",
			Short: "Print fleetd's version",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "fleetd %s\n", fleetdVersion())
				return err
			},
		}
	})
}
