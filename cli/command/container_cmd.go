package command

import "github.com/spf13/cobra"

// newContainerCommand is `berth container`, the container commands under
// one name, as Docker's management command.
func newContainerCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "container COMMAND",
		Short: "Manage containers",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	ls := newPsCommand(c)
	ls.Use, ls.Aliases = "ls [OPTIONS]", []string{"ps", "list"}
	cmd.AddCommand(
		newCreateCommand(c),
		newRunCommand(c),
		newStartCommand(c),
		newAttachCommand(c),
		newStopCommand(c),
		newRestartCommand(c),
		newCpCommand(c),
		newExportCommand(c),
		newKillCommand(c),
		newWaitCommand(c),
		newRmCommand(c),
		ls,
		newLogsCommand(c),
		newExecCommand(c),
		newContainerInspectCommand(c),
		newPauseCommand(c),
		newUnpauseCommand(c),
		newTopCommand(c),
		newRenameCommand(c),
		newStatsCommand(c),
		newUpdateCommand(c),
	)
	return cmd
}
