package command

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/services/containers"
)

func newRestartCommand(c *CLI) *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "restart [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Restart one or more containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			return c.eachContainer(ctx, cl, args, func(ctr containers.Container) error {
				// berthd removes a --rm container once it exits: not
				// while it is restarted, as in Docker.
				in := containers.IntentOf(ctr)
				if in.AutoRemove {
					held := in
					held.AutoRemove = false
					if err := saveIntent(ctx, cl, ctr, held); err != nil {
						return err
					}
					fresh, err := cl.Containers.Get(ctx, ctr.ID)
					if err != nil {
						return err
					}
					ctr = fresh
					defer func() {
						if fresh, err := cl.Containers.Get(context.WithoutCancel(ctx), ctr.ID); err == nil {
							in := containers.IntentOf(fresh)
							in.AutoRemove = true
							saveIntent(context.WithoutCancel(ctx), cl, fresh, in)
						}
					}()
				}
				if err := stopContainer(ctx, cl, ctr, time.Duration(timeout)*time.Second); err != nil {
					return err
				}
				// The stop recorded the exit; start from the fresh record.
				fresh, err := cl.Containers.Get(ctx, ctr.ID)
				if err != nil {
					return err
				}
				return unwrapStatus(startTask(ctx, cl, fresh, nil))
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "timeout", "t", 10, "Seconds to wait before killing the container")
	return cmd
}

// unwrapStatus turns a startTask failure into a plain error, so that a
// command handling several containers prints each and exits with 1.
func unwrapStatus(err error) error {
	if se, ok := err.(*statusError); ok && se.err != nil {
		return se.err
	}
	return err
}
