package command

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/formatter"
	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// The snapshot commands follow ctr's: the same subcommands, arguments and
// output, so that what one knows of `ctr snapshot` carries over.

func newSnapshotCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "snapshot COMMAND",
		Aliases: []string{"snapshots"},
		Short:   "Manage the snapshots of a snapshotter",
		Long: `Manage the snapshots of a snapshotter (--snapshotter, or berthd's default).

Loading an image unpacks each layer into a committed snapshot named by its chain
ID. A prepared snapshot is active (writable) until it is committed; a view is a
read-only snapshot of a committed one. The snapshotter returns mounts as data:
'prepare --target', 'view --target' and 'mounts' print the mount command.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newSnapshotLsCommand(c),
		newSnapshotTreeCommand(c),
		newSnapshotInfoCommand(c),
		newSnapshotUsageCommand(c),
		newSnapshotPrepareCommand(c),
		newSnapshotViewCommand(c),
		newSnapshotCommitCommand(c),
		newSnapshotRmCommand(c),
		newSnapshotMountsCommand(c),
	)
	return cmd
}

// snapshotterClient connects to berthd and returns the snapshotter the commands
// work with, ctx scoped to the namespace, and its name.
func (c *CLI) snapshotterClient(ctx context.Context) (context.Context, snapshots.Snapshotter, string, error) {
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	name, err := c.Snapshotter(ctx, cl)
	if err != nil {
		return nil, nil, "", err
	}
	return ctx, cl.Snapshotter(name), name, nil
}

// snapshotError adds which snapshot and snapshotter a failure is about.
func snapshotError(what, key, snapshotter string, err error) error {
	return fmt.Errorf("%s snapshot %q in snapshotter %q: %w", what, key, snapshotter, err)
}

// walkSnapshots returns the snapshots matching any of the filters, sorted
// by name.
func walkSnapshots(ctx context.Context, sn snapshots.Snapshotter, name string, filters ...string) ([]snapshots.Info, error) {
	var infos []snapshots.Info
	if err := sn.Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
		infos = append(infos, info)
		return nil
	}, filters...); err != nil {
		return nil, fmt.Errorf("listing the snapshots of snapshotter %q: %w", name, err)
	}
	slices.SortFunc(infos, func(a, b snapshots.Info) int { return strings.Compare(a.Name, b.Name) })
	return infos, nil
}

type snapshotLsOptions struct {
	quiet   bool
	filters []string
	format  string
}

// snapshotRow is one line of `berth snapshot ls`.
type snapshotRow struct {
	Key       string
	Parent    string
	Kind      string
	CreatedAt string
	UpdatedAt string
	Labels    string
	LabelMap  map[string]string `json:"-"`
}

var snapshotTable = formatter.Table{
	Default: "table {{.Key}}\t{{.Parent}}\t{{.Kind}}",
	Header: formatter.Header{
		"Key": "KEY", "Parent": "PARENT", "Kind": "KIND", "CreatedAt": "CREATED AT", "UpdatedAt": "UPDATED AT",
		"Labels": "LABELS", "LabelMap": "LABELS",
	},
}

func newSnapshotLsCommand(c *CLI) *cobra.Command {
	var o snapshotLsOptions
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List snapshots",
		Long: `List the snapshots of the snapshotter in the namespace: KEY, PARENT and KIND
(active, view or committed), as 'ctr snapshot ls' does.

--filter takes the store's filter syntax over the fields name, parent, kind and
labels; a snapshot is listed when any one --filter matches:
  --filter kind==committed
  --filter 'parent==sha256:ab...'
  --filter 'labels."berth.snapshot.rebase"'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotLs(cmd.Context(), c, o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only show keys")
	f.StringArrayVarP(&o.filters, "filter", "f", nil, "filter snapshots (fields name, parent, kind, labels)")
	f.StringVar(&o.format, "format", "", "format output: 'table', 'table TEMPLATE', 'json', or a Go template")
	return cmd
}

func runSnapshotLs(ctx context.Context, c *CLI, o snapshotLsOptions) error {
	ctx, sn, name, err := c.snapshotterClient(ctx)
	if err != nil {
		return err
	}
	infos, err := walkSnapshots(ctx, sn, name, o.filters...)
	if err != nil {
		return err
	}
	rows := make([]snapshotRow, len(infos))
	for i, info := range infos {
		rows[i] = snapshotRow{
			Key:       info.Name,
			Parent:    info.Parent,
			Kind:      info.Kind.String(),
			CreatedAt: formatter.TimeString(info.Created),
			UpdatedAt: formatter.TimeString(info.Updated),
			Labels:    labelString(info.Labels),
			LabelMap:  info.Labels,
		}
	}
	format := formatter.Format(o.format)
	if o.quiet && (format == "" || format == formatter.TableFormatKey) {
		format = "{{.Key}}"
	}
	return formatter.Write(c.Out, format, snapshotTable, rows)
}

func newSnapshotTreeCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "tree",
		Short: "Show the snapshots as a tree of parents and children",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, sn, name, err := c.snapshotterClient(cmd.Context())
			if err != nil {
				return err
			}
			infos, err := walkSnapshots(ctx, sn, name)
			if err != nil {
				return err
			}
			printSnapshotTree(c.Out, infos)
			return nil
		},
	}
}

// printSnapshotTree prints each snapshot under its parent, indented two
// spaces a level, as ctr does:
//
//	sha256:aaa
//	 \_ sha256:bbb
//	   \_ extract-123
func printSnapshotTree(w io.Writer, infos []snapshots.Info) {
	children := map[string][]string{}
	known := map[string]bool{}
	for _, info := range infos {
		known[info.Name] = true
	}
	var roots []string
	for _, info := range infos {
		// A parent outside the listing (it should not happen) makes a root.
		if info.Parent == "" || !known[info.Parent] {
			roots = append(roots, info.Name)
			continue
		}
		children[info.Parent] = append(children[info.Parent], info.Name)
	}
	var printNode func(name string, level int)
	printNode = func(name string, level int) {
		prefix := strings.Repeat("  ", level)
		if level > 0 {
			prefix += `\_`
		}
		fmt.Fprintf(w, "%s %s\n", prefix, name)
		for _, child := range children[name] {
			printNode(child, level+1)
		}
	}
	for _, root := range roots {
		printNode(root, 0)
	}
}

// snapshotInfoJSON is `berth snapshot info`: ctr's JSON of a snapshot.
type snapshotInfoJSON struct {
	Kind    string
	Name    string
	Parent  string            `json:",omitempty"`
	Labels  map[string]string `json:",omitempty"`
	Created time.Time
	Updated time.Time
}

func newSnapshotInfoCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "info KEY",
		Short: "Show a snapshot's metadata as JSON",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, sn, name, err := c.snapshotterClient(cmd.Context())
			if err != nil {
				return err
			}
			info, err := sn.Stat(ctx, args[0])
			if err != nil {
				return snapshotError("reading", args[0], name, err)
			}
			return writeJSONIndent2(c.Out, snapshotInfoJSON{
				Kind: info.Kind.String(), Name: info.Name, Parent: info.Parent, Labels: info.Labels,
				Created: info.Created, Updated: info.Updated,
			})
		},
	}
}

// writeJSONIndent2 prints v indented by two spaces, as ctr prints objects.
func writeJSONIndent2(w io.Writer, v any) error {
	var sb strings.Builder
	if err := formatter.WriteJSONIndent(&sb, v); err != nil {
		return err
	}
	// WriteJSONIndent indents by four spaces, as Docker; halve them.
	lines := strings.Split(sb.String(), "\n")
	for i, l := range lines {
		trimmed := strings.TrimLeft(l, " ")
		lines[i] = strings.Repeat(" ", (len(l)-len(trimmed))/2) + trimmed
	}
	_, err := io.WriteString(w, strings.Join(lines, "\n"))
	return err
}

func newSnapshotUsageCommand(c *CLI) *cobra.Command {
	var bytes bool
	cmd := &cobra.Command{
		Use:   "usage [OPTIONS] [KEY...]",
		Short: "Show the disk space snapshots use of their own",
		Long: `Show the disk space and inodes each snapshot uses of its own (not its
parents'), for the snapshots named or, without KEY, for every snapshot.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotUsage(cmd.Context(), c, bytes, args)
		},
	}
	cmd.Flags().BoolVarP(&bytes, "bytes", "b", false, "print sizes in bytes")
	return cmd
}

func runSnapshotUsage(ctx context.Context, c *CLI, bytes bool, keys []string) error {
	ctx, sn, name, err := c.snapshotterClient(ctx)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		infos, err := walkSnapshots(ctx, sn, name)
		if err != nil {
			return err
		}
		for _, info := range infos {
			keys = append(keys, info.Name)
		}
	}
	size := formatter.HumanSize
	if bytes {
		size = func(n int64) string { return fmt.Sprint(n) }
	}
	tw := tabwriter.NewWriter(c.Out, 10, 1, 3, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSIZE\tINODES")
	var errs []error
	for _, key := range keys {
		u, err := sn.Usage(ctx, key)
		if err != nil {
			errs = append(errs, snapshotError("measuring", key, name, err))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", key, size(u.Size), u.Inodes)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return joinErrs(errs)
}

// labelGCRoot on a snapshot makes it a root of berthd's garbage collection
// (services/metadata.LabelGCRoot; the CLI does not import the server).
// Snapshots made by hand get it, as ctr's do, so that they stay until
// 'snapshot rm' although no image or lease refers to them.
const labelGCRoot = "berth.gc.root"

// snapshotLabels parses --label KEY=VALUE flags and adds labelGCRoot.
func snapshotLabels(flags []string) (map[string]string, error) {
	labels := map[string]string{labelGCRoot: time.Now().UTC().Format(time.RFC3339)}
	for _, f := range flags {
		k, v, _ := strings.Cut(f, "=")
		if k == "" {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "label %q: expected KEY=VALUE", f)
		}
		labels[k] = v
	}
	return labels, nil
}

func newSnapshotPrepareCommand(c *CLI) *cobra.Command {
	var target string
	var labels []string
	cmd := &cobra.Command{
		Use:   "prepare [OPTIONS] KEY [PARENT]",
		Short: "Create an active (writable) snapshot on a committed parent",
		Long: `Create the active snapshot KEY on the committed snapshot PARENT (an empty one
without PARENT). With --target, print the command that mounts it there.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := minArgs(1)(cmd, args); err != nil {
				return err
			}
			return maxArgs(2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			parent := ""
			if len(args) == 2 {
				parent = args[1]
			}
			return runSnapshotCreate(cmd.Context(), c, "preparing", args[0], parent, target, labels)
		},
	}
	cmd.Flags().StringVarP(&target, "target", "t", "", "print the mount command for this mount point")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "set a label on the snapshot (KEY=VALUE)")
	return cmd
}

func newSnapshotViewCommand(c *CLI) *cobra.Command {
	var target string
	var labels []string
	cmd := &cobra.Command{
		Use:   "view [OPTIONS] KEY PARENT",
		Short: "Create a read-only view of a committed snapshot",
		Long: `Create the read-only snapshot KEY of the committed snapshot PARENT. With
--target, print the command that mounts it there.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshotCreate(cmd.Context(), c, "viewing", args[0], args[1], target, labels)
		},
	}
	cmd.Flags().StringVarP(&target, "target", "t", "", "print the mount command for this mount point")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "set a label on the snapshot (KEY=VALUE)")
	return cmd
}

func runSnapshotCreate(ctx context.Context, c *CLI, verb, key, parent, target string, labelFlags []string) error {
	labels, err := snapshotLabels(labelFlags)
	if err != nil {
		return err
	}
	ctx, sn, name, err := c.snapshotterClient(ctx)
	if err != nil {
		return err
	}
	opts := []snapshots.Opt{snapshots.WithLabels(labels)}
	var mounts []mount.Mount
	if verb == "viewing" {
		mounts, err = sn.View(ctx, key, parent, opts...)
	} else {
		mounts, err = sn.Prepare(ctx, key, parent, opts...)
	}
	if err != nil {
		if parent != "" {
			return fmt.Errorf("%s snapshot %q of %q in snapshotter %q: %w", verb, key, parent, name, err)
		}
		return snapshotError(verb, key, name, err)
	}
	if target != "" {
		printMounts(c.Out, target, mounts)
	}
	return nil
}

func newSnapshotCommitCommand(c *CLI) *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] NAME KEY",
		Short: "Commit an active snapshot under a name",
		Long:  `Commit the active snapshot KEY as the committed snapshot NAME; KEY is gone afterwards.`,
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := snapshotLabels(labels)
			if err != nil {
				return err
			}
			ctx, sn, name, err := c.snapshotterClient(cmd.Context())
			if err != nil {
				return err
			}
			if err := sn.Commit(ctx, args[0], args[1], snapshots.WithLabels(l)); err != nil {
				return fmt.Errorf("committing snapshot %q as %q in snapshotter %q: %w", args[1], args[0], name, err)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&labels, "label", nil, "set a label on the committed snapshot (KEY=VALUE)")
	return cmd
}

func newSnapshotRmCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:     "rm KEY [KEY...]",
		Aliases: []string{"remove", "delete", "del"},
		Short:   "Remove one or more snapshots",
		Long: `Remove snapshots. A committed snapshot that is the parent of another cannot
be removed; the snapshots of an image go when the image is removed ('berth rmi').`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, sn, name, err := c.snapshotterClient(cmd.Context())
			if err != nil {
				return err
			}
			var errs []error
			for _, key := range args {
				if err := sn.Remove(ctx, key); err != nil {
					errs = append(errs, snapshotError("removing", key, name, err))
					continue
				}
				fmt.Fprintln(c.Out, key)
			}
			return joinErrs(errs)
		},
	}
}

func newSnapshotMountsCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "mounts TARGET KEY",
		Short: "Print the command that mounts an active snapshot or view at TARGET",
		Long: `Print the mount command line for the active snapshot or view KEY at TARGET,
as 'ctr snapshot mounts' does; run it as root:
  $(berth snapshot mounts /mnt/x my-snapshot)`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, sn, name, err := c.snapshotterClient(cmd.Context())
			if err != nil {
				return err
			}
			mounts, err := sn.Mounts(ctx, args[1])
			if err != nil {
				return snapshotError("reading the mounts of", args[1], name, err)
			}
			printMounts(c.Out, args[0], mounts)
			return nil
		},
	}
}

// printMounts prints one `mount` command line per mount, as ctr does.
func printMounts(w io.Writer, target string, mounts []mount.Mount) {
	for _, m := range mounts {
		line := fmt.Sprintf("mount -t %s %s %s", m.Type, m.Source, filepath.Join(target, m.Target))
		if len(m.Options) > 0 {
			line += " -o " + strings.Join(m.Options, ",")
		}
		fmt.Fprintln(w, line)
	}
}
