package command

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/containers"
)

func newRenameCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			newName := strings.TrimPrefix(strings.TrimSpace(args[1]), "/")
			if newName == "" {
				return errdefs.Errorf(errdefs.ErrInvalidArgument, "container name cannot be empty")
			}
			if err := containers.ValidateName(newName); err != nil {
				return err
			}
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			ctr, err := resolveContainer(ctx, cl, args[0])
			if err != nil {
				return err
			}
			if ctr.Name == newName {
				return errdefs.Errorf(errdefs.ErrInvalidArgument, "Renaming a container with the same name as its current name")
			}
			if err := nameFree(ctx, cl, newName); err != nil {
				return err
			}
			ctr.Name = newName
			if _, err := cl.Containers.Update(ctx, ctr, "name"); err != nil {
				if errdefs.IsAlreadyExists(err) {
					if nerr := nameFree(ctx, cl, newName); nerr != nil {
						return nerr
					}
				}
				return fmt.Errorf("renaming container %s to %s: %w", args[0], newName, err)
			}
			return nil
		},
	}
}
