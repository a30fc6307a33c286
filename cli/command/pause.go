package command

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
)

func newPauseCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "pause CONTAINER [CONTAINER...]",
		Short: "Pause all processes within one or more containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			return c.eachContainer(ctx, cl, args, func(ctr containers.Container) error {
				p, err := taskOf(ctx, cl, ctr.ID)
				if err != nil {
					return err
				}
				switch {
				case !isRunning(p):
					return errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s is not running", ctr.ID)
				case p.GetStatus() == tasksv1.Status_STATUS_PAUSED:
					return errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s is already paused", ctr.ID)
				}
				if _, err := cl.Tasks.Pause(ctx, &tasksv1.PauseTaskRequest{ContainerId: ctr.ID}); err != nil {
					return fmt.Errorf("cannot pause container %s: %w", ctr.ID, err)
				}
				return nil
			})
		},
	}
}

func newUnpauseCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "unpause CONTAINER [CONTAINER...]",
		Short: "Unpause all processes within one or more containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			return c.eachContainer(ctx, cl, args, func(ctr containers.Container) error {
				p, err := taskOf(ctx, cl, ctr.ID)
				if err != nil {
					return err
				}
				if p.GetStatus() != tasksv1.Status_STATUS_PAUSED {
					return errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s is not paused", ctr.ID)
				}
				if _, err := cl.Tasks.Resume(ctx, &tasksv1.ResumeTaskRequest{ContainerId: ctr.ID}); err != nil {
					return fmt.Errorf("cannot unpause container %s: %w", ctr.ID, err)
				}
				return nil
			})
		},
	}
}
