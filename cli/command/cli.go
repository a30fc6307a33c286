// Package command holds the berth command tree (cobra). Each command family
// is one file; commands reach berthd through cli/client and print through
// cli/formatter. The CLI keeps no state of its own.
package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/internal/namespaces"
)

// Streams are the standard streams of the command.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
	// IsTerminal reports whether one of the streams is a terminal; nil
	// means asking the operating system.
	IsTerminal func(stream any) bool
}

// StdStreams returns the process's standard streams.
func StdStreams() Streams { return Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr} }

func (s Streams) isTerminal(stream any) bool {
	if s.IsTerminal != nil {
		return s.IsTerminal(stream)
	}
	f, ok := stream.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// BuildInfo describes the berth binary, for `berth version`.
type BuildInfo struct {
	Version  string
	Revision string
}

// CLI is what every command shares: the streams, the global options and,
// once a command asks for it, the connection to berthd.
type CLI struct {
	Streams
	Build BuildInfo

	address     string
	namespace   string
	snapshotter string
	debug       bool

	mu     sync.Mutex
	client *client.Client
}

// Client connects to berthd (once per process) and returns ctx scoped to
// the namespace of --namespace.
func (c *CLI) Client(ctx context.Context) (context.Context, *client.Client, error) {
	nctx, err := client.WithNamespace(ctx, c.namespace)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		cl, err := client.New(ctx, c.address, client.WithLogger(c.logger()))
		if err != nil {
			return nil, nil, err
		}
		c.client = cl
	}
	return nctx, c.client, nil
}

// Snapshotter returns the name of the snapshotter the commands work with:
// the one of --snapshotter or BERTH_SNAPSHOTTER, or else berthd's default.
func (c *CLI) Snapshotter(ctx context.Context, cl *client.Client) (string, error) {
	if c.snapshotter != "" {
		return c.snapshotter, nil
	}
	return cl.DefaultSnapshotter(ctx)
}

// Namespace is the namespace the commands work in.
func (c *CLI) Namespace() string { return c.namespace }

func (c *CLI) logger() *slog.Logger {
	if !c.debug {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(c.Err, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (c *CLI) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		c.client.Close()
		c.client = nil
	}
}

// Exit statuses, as Docker's CLI uses them.
const (
	// ExitFailure is the status of any failed command.
	ExitFailure = 1
	// ExitUsage is the status of a command line that cobra cannot parse
	// (an unknown flag, a bad flag value).
	ExitUsage = 125
)

// usageError is a command line that does not fit the command; it is
// printed with a pointer to the command's help.
type usageError struct {
	cmd  *cobra.Command
	err  error
	code int
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// errList is several independent failures of one command (`rmi a b c`):
// each is printed on its own line.
type errList []error

func (e errList) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "\n")
}

// joinErrs returns nil, the one error, or an errList.
func joinErrs(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errList(errs)
}

// Run runs the berth command line args and returns the exit status. Every
// error is printed once, to stderr, as "Error: MESSAGE".
func Run(ctx context.Context, args []string, streams Streams, build BuildInfo) int {
	c := &CLI{Streams: streams, Build: build}
	defer c.close()
	root := NewRootCommand(c)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var status *statusError
	if errors.As(err, &status) {
		if msg := status.Error(); msg != "" {
			fmt.Fprintf(streams.Err, "Error: %s\n", msg)
		}
		return status.code
	}
	var list errList
	if !errors.As(err, &list) {
		list = errList{err}
	}
	for _, e := range list {
		fmt.Fprintf(streams.Err, "Error: %s\n", e)
	}
	var usage *usageError
	if errors.As(err, &usage) {
		fmt.Fprintf(streams.Err, "See '%s --help'.\n", usage.cmd.CommandPath())
		return usage.code
	}
	return ExitFailure
}

// NewRootCommand returns the berth command with every subcommand.
func NewRootCommand(c *CLI) *cobra.Command {
	root := &cobra.Command{
		Use:   "berth [OPTIONS] COMMAND",
		Short: "berth is a container engine: images, content and namespaces served by berthd",
		// Errors are printed once by Run; usage is pointed to, not dumped.
		SilenceErrors: true,
		SilenceUsage:  true,
		// Flags before a command are the root's: `berth -n NS ps -n 2` gives
		// the namespace, then ps's --last.
		TraverseChildren:  true,
		DisableAutoGenTag: true,
		Args:              noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
		CompletionOptions:          cobra.CompletionOptions{HiddenDefaultCmd: true},
		SuggestionsMinimumDistance: 2,
	}
	root.SetIn(c.In)
	root.SetOut(c.Out)
	root.SetErr(c.Err)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{cmd: cmd, err: err, code: ExitUsage}
	})
	flags := root.PersistentFlags()
	flags.StringVar(&c.address, "address", client.AddressFromEnv(), "berthd socket (env "+client.AddressEnv+")")
	flags.StringVarP(&c.namespace, "namespace", "n", namespaces.FromEnv(), "namespace to work in (env "+namespaces.EnvVar+")")
	flags.StringVar(&c.snapshotter, "snapshotter", os.Getenv(client.SnapshotterEnv), "snapshotter to unpack images into and to manage with 'berth snapshot' (env "+client.SnapshotterEnv+"; default: berthd's)")
	flags.BoolVar(&c.debug, "debug", false, "log each call to berthd on stderr")

	image := newImageCommand(c)
	root.AddCommand(
		image,
		newImagesCommand(c),
		newLoadCommand(c),
		newSaveCommand(c),
		newTagCommand(c),
		newRmiCommand(c),
		newContentCommand(c),
		newSnapshotCommand(c),
		newNamespaceCommand(c),
		newVersionCommand(c),
		newInfoCommand(c),
		newCreateCommand(c),
		newRunCommand(c),
		newStartCommand(c),
		newAttachCommand(c),
		newPsCommand(c),
		newLogsCommand(c),
		newStopCommand(c),
		newKillCommand(c),
		newWaitCommand(c),
		newRmCommand(c),
		newExecCommand(c),
		newInspectCommand(c),
		newPauseCommand(c),
		newUnpauseCommand(c),
		newTopCommand(c),
		newRenameCommand(c),
		newRestartCommand(c),
		newCpCommand(c),
		newExportCommand(c),
		newContainerCommand(c),
		newStatsCommand(c),
		newUpdateCommand(c),
	)
	// Usage lines name their options themselves ("[OPTIONS]").
	var disable func(*cobra.Command)
	disable = func(cmd *cobra.Command) {
		cmd.DisableFlagsInUseLine = true
		for _, sub := range cmd.Commands() {
			disable(sub)
		}
	}
	disable(root)
	return root
}

// Argument checks that fail as usage errors with Docker's exit status 1.

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasSubCommands() {
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
		}
		return &usageError{cmd: cmd, code: ExitFailure, err: errors.New(msg)}
	}
	return &usageError{cmd: cmd, code: ExitFailure, err: fmt.Errorf("%q accepts no arguments", cmd.CommandPath())}
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= n {
			return nil
		}
		return &usageError{cmd: cmd, code: ExitFailure, err: fmt.Errorf("%q requires at least %d %s\nUsage:  %s", cmd.CommandPath(), n, plural(n, "argument"), cmd.UseLine())}
	}
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) <= n {
			return nil
		}
		return &usageError{cmd: cmd, code: ExitFailure, err: fmt.Errorf("%q accepts at most %d %s\nUsage:  %s", cmd.CommandPath(), n, plural(n, "argument"), cmd.UseLine())}
	}
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		return &usageError{cmd: cmd, code: ExitFailure, err: fmt.Errorf("%q requires exactly %d %s\nUsage:  %s", cmd.CommandPath(), n, plural(n, "argument"), cmd.UseLine())}
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
