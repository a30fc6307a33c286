package command

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/formatter"
	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
)

func newContentCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "content COMMAND",
		Short: "Manage the blobs of the content store",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newContentLsCommand(c), newContentGetCommand(c), newContentRmCommand(c))
	return cmd
}

type contentLsOptions struct {
	quiet   bool
	filters []string
	format  string
}

func newContentLsCommand(c *CLI) *cobra.Command {
	var o contentLsOptions
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List blobs",
		Long: `List the blobs of the content store in the namespace.

--filter takes the store's filter syntax over the fields digest, size and
labels; a blob is listed when any one --filter matches:
  --filter 'labels."berth.gc.ref.content.config"'   has the label
  --filter 'digest~=^sha256:ab'                      regular expression
  --filter 'size==1024'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runContentLs(cmd.Context(), c, o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only show digests")
	f.StringArrayVarP(&o.filters, "filter", "f", nil, "filter blobs (fields digest, size, labels)")
	f.StringVar(&o.format, "format", "", "format output: 'table', 'table TEMPLATE', 'json', or a Go template")
	return cmd
}

// contentRow is one line of `berth content ls`.
type contentRow struct {
	Digest    string
	Size      string
	Bytes     int64
	Age       string
	CreatedAt string
	Labels    string
	// LabelMap gives templates the labels as a map.
	LabelMap map[string]string `json:"-"`
}

var contentTable = formatter.Table{
	Default: "table {{.Digest}}\t{{.Size}}\t{{.Age}}\t{{.Labels}}",
	Header: formatter.Header{
		"Digest": "DIGEST", "Size": "SIZE", "Bytes": "BYTES", "Age": "AGE", "CreatedAt": "CREATED AT",
		"Labels": "LABELS", "LabelMap": "LABELS",
	},
}

func runContentLs(ctx context.Context, c *CLI, o contentLsOptions) error {
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	var infos []content.Info
	if err := cl.Content.Walk(ctx, func(info content.Info) error {
		infos = append(infos, info)
		return nil
	}, o.filters...); err != nil {
		return fmt.Errorf("listing content: %w", err)
	}
	slices.SortFunc(infos, func(a, b content.Info) int { return strings.Compare(a.Digest.String(), b.Digest.String()) })
	now := time.Now()
	rows := make([]contentRow, len(infos))
	for i, info := range infos {
		rows[i] = contentRow{
			Digest:    info.Digest.String(),
			Size:      formatter.HumanSize(info.Size),
			Bytes:     info.Size,
			Age:       formatter.HumanDuration(now.Sub(info.CreatedAt)),
			CreatedAt: formatter.TimeString(info.CreatedAt),
			Labels:    labelString(info.Labels),
			LabelMap:  info.Labels,
		}
	}
	format := formatter.Format(o.format)
	if o.quiet && (format == "" || format == formatter.TableFormatKey) {
		format = "{{.Digest}}"
	}
	return formatter.Write(c.Out, format, contentTable, rows)
}

// labelString prints labels as sorted "k=v,k=v", or "-" when there are none.
func labelString(labels map[string]string) string {
	if len(labels) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(labels))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, ",")
}

func newContentGetCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "get DIGEST",
		Short: "Write a blob to STDOUT",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runContentGet(cmd.Context(), c, args[0])
		},
	}
}

func runContentGet(ctx context.Context, c *CLI, arg string) error {
	dgst, err := parseDigest(arg)
	if err != nil {
		return err
	}
	if c.isTerminal(c.Out) {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "refusing to write blob %s to a terminal: redirect the output (berth content get %s > FILE)", dgst, arg)
	}
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	info, err := cl.Content.Info(ctx, dgst)
	if err != nil {
		return blobError(dgst, err)
	}
	ra, err := cl.Content.ReaderAt(ctx, ocispec.Descriptor{Digest: dgst, Size: info.Size})
	if err != nil {
		return blobError(dgst, err)
	}
	defer ra.Close()
	if _, err := io.Copy(c.Out, content.NewReader(ra)); err != nil {
		return fmt.Errorf("writing blob %s: %w", dgst, err)
	}
	return nil
}

func newContentRmCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:     "rm DIGEST [DIGEST...]",
		Aliases: []string{"remove", "delete", "del"},
		Short:   "Remove one or more blobs",
		Long: `Remove one or more blobs from the namespace. The bytes go when no other
namespace holds the blob. A blob an image still needs can be removed, which
breaks that image; remove the image with 'berth rmi' instead.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runContentRm(cmd.Context(), c, args)
		},
	}
}

func runContentRm(ctx context.Context, c *CLI, args []string) error {
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, arg := range args {
		dgst, err := parseDigest(arg)
		if err == nil {
			err = cl.Content.Delete(ctx, dgst)
			if err != nil {
				err = blobError(dgst, err)
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(c.Out, dgst)
	}
	return joinErrs(errs)
}

// parseDigest accepts "sha256:HEX" or a bare 64-digit HEX.
func parseDigest(arg string) (digest.Digest, error) {
	s := arg
	if !strings.Contains(s, ":") {
		s = "sha256:" + s
	}
	d, err := digest.Parse(s)
	if err != nil {
		return "", errdefs.Errorf(errdefs.ErrInvalidArgument, "%q is not a digest (sha256:<64 hex digits>)", arg)
	}
	return d, nil
}

func blobError(dgst digest.Digest, err error) error {
	if errdefs.IsNotFound(err) {
		return errdefs.Errorf(errdefs.ErrNotFound, "No such blob: %s", dgst)
	}
	return fmt.Errorf("blob %s: %w", dgst, err)
}
