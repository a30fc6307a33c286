package command

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/diff/layer"
)

func newExportCommand(c *CLI) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [OPTIONS] CONTAINER",
		Short: "Export a container's filesystem as a tar archive",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			return runExport(ctx, c, output, args[0])
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	return cmd
}

// runExport writes a tar of the container's root filesystem: its snapshot
// mounted read-only (for a running container, an overlay of its upper and
// lower folders with no upper of its own), without the mounts that the
// container has on top of it, as Docker's export.
func runExport(ctx context.Context, c *CLI, output, arg string) error {
	if output == "" && c.isTerminal(c.Out) {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "cowardly refusing to save to a terminal. Use the -o flag or redirect")
	}
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	ctr, err := resolveContainer(ctx, cl, arg)
	if err != nil {
		return err
	}
	return withContainerRoot(ctx, cl, ctr, true, func(root string) error {
		if output == "" {
			return layer.WriteTree(ctx, c.Out, root, "/", "")
		}
		return writeAtomically(output, func(w io.Writer) error {
			return layer.WriteTree(ctx, w, root, "/", "")
		})
	})
}

// untilSignal returns ctx, canceled when berth gets a signal that would end
// it (ctrl-c, SIGTERM, a hang-up, a write to a closed pipe): a command that
// mounts a container's filesystem (cp, export) then stops and unmounts it
// before berth exits, rather than leave the mount behind.
func untilSignal(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGPIPE)
}
