package command

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/formatter"
	"github.com/berth-engine/berth/internal/errdefs"
)

func newNamespaceCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "namespace COMMAND",
		Aliases: []string{"ns"},
		Short:   "Manage namespaces",
		Long: `Manage namespaces. Every image, blob and lease lives in exactly one
namespace; commands work in the one given by --namespace (default "default").`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newNamespaceLsCommand(c), newNamespaceCreateCommand(c), newNamespaceRmCommand(c))
	return cmd
}

// namespaceRow is one line of `berth namespace ls`.
type namespaceRow struct {
	Name   string
	Labels string
	// LabelMap gives templates the labels as a map.
	LabelMap map[string]string `json:"-"`
}

var namespaceTable = formatter.Table{
	Default: "table {{.Name}}\t{{.Labels}}",
	Header:  formatter.Header{"Name": "NAME", "Labels": "LABELS", "LabelMap": "LABELS"},
}

func newNamespaceLsCommand(c *CLI) *cobra.Command {
	var quiet bool
	var format string
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List namespaces",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			names, err := cl.Namespaces.List(ctx)
			if err != nil {
				return fmt.Errorf("listing namespaces: %w", err)
			}
			slices.Sort(names)
			rows := make([]namespaceRow, len(names))
			for i, n := range names {
				rows[i].Name = n
				if quiet {
					continue
				}
				labels, err := cl.Namespaces.Labels(ctx, n)
				if err != nil && !errdefs.IsNotFound(err) {
					return fmt.Errorf("reading the labels of namespace %q: %w", n, err)
				}
				rows[i].Labels, rows[i].LabelMap = labelString(labels), labels
			}
			f := formatter.Format(format)
			if quiet && (f == "" || f == formatter.TableFormatKey) {
				f = "{{.Name}}"
			}
			return formatter.Write(c.Out, f, namespaceTable, rows)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show names")
	cmd.Flags().StringVar(&format, "format", "", "format output: 'table', 'table TEMPLATE', 'json', or a Go template")
	return cmd
}

func newNamespaceCreateCommand(c *CLI) *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NAME",
		Short: "Create a namespace",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := parseLabels(labels)
			if err != nil {
				return err
			}
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			if err := cl.Namespaces.Create(ctx, args[0], m); err != nil {
				return fmt.Errorf("creating namespace %q: %w", args[0], err)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "set a label (KEY=VALUE); repeat for more")
	return cmd
}

func newNamespaceRmCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME [NAME...]",
		Aliases: []string{"remove", "delete", "del"},
		Short:   "Remove one or more empty namespaces",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			var errs []error
			for _, n := range args {
				if err := cl.Namespaces.Delete(ctx, n); err != nil {
					errs = append(errs, fmt.Errorf("removing namespace %q: %w", n, err))
					continue
				}
				fmt.Fprintln(c.Out, n)
			}
			return joinErrs(errs)
		},
	}
}

// parseLabels turns KEY=VALUE arguments into a map; "KEY" alone is an
// empty value, as Docker's --label takes it.
func parseLabels(args []string) (map[string]string, error) {
	m := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		if k == "" {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "bad label %q: want KEY=VALUE", a)
		}
		m[k] = v
	}
	return m, nil
}
