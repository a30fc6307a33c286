package command

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/formatter"
	"github.com/berth-engine/berth/cli/imageutil"
	"github.com/berth-engine/berth/internal/reference"
)

// newImageCommand is `berth image`, the group of image commands.
func newImageCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image COMMAND",
		Short: "Manage images",
		Args:  noArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	ls := newImagesCommand(c)
	ls.Use = "ls [OPTIONS] [REPOSITORY[:TAG]]"
	ls.Aliases = []string{"list"}
	rm := newRmiCommand(c)
	rm.Use = "rm [OPTIONS] IMAGE [IMAGE...]"
	rm.Aliases = []string{"remove", "rmi"}
	cmd.AddCommand(ls, newImageInspectCommand(c), newTagCommand(c), rm, newLoadCommand(c), newSaveCommand(c))
	return cmd
}

type imagesOptions struct {
	all     bool
	quiet   bool
	digests bool
	noTrunc bool
	filters []string
	format  string
}

func newImagesCommand(c *CLI) *cobra.Command {
	var o imagesOptions
	cmd := &cobra.Command{
		Use:   "images [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImages(cmd.Context(), c, o, args)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "show all images (the default: berth keeps no intermediate images)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only show image IDs")
	f.BoolVar(&o.digests, "digests", false, "show digests")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "don't truncate output")
	f.StringArrayVarP(&o.filters, "filter", "f", nil, "filter output: dangling=true|false, reference=PATTERN, label=KEY[=VALUE]")
	f.StringVar(&o.format, "format", "", "format output: 'table', 'table TEMPLATE', 'json', or a Go template")
	return cmd
}

// imageRow is one line of `berth images`; templates name its fields.
type imageRow struct {
	Repository   string
	Tag          string
	Digest       string
	ID           string
	CreatedSince string
	CreatedAt    string
	Size         string
}

var imageHeader = formatter.Header{
	"Repository":   "REPOSITORY",
	"Tag":          "TAG",
	"Digest":       "DIGEST",
	"ID":           "IMAGE ID",
	"CreatedSince": "CREATED",
	"CreatedAt":    "CREATED AT",
	"Size":         "SIZE",
}

const (
	imagesTable       = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{if .CreatedSince}}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}"
	imagesDigestTable = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{if .CreatedSince}}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}"
)

func runImages(ctx context.Context, c *CLI, o imagesOptions, args []string) error {
	filter, err := imageutil.ParseFilter(o.filters)
	if err != nil {
		return err
	}
	if len(args) == 1 {
		filter.AddReference(args[0])
	}
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	r := imageutil.NewResolver(cl.Images, cl.Content)
	all, err := r.List(ctx)
	if err != nil {
		return err
	}
	if filter.NeedsConfig() {
		r.LoadConfigs(ctx, all)
	}
	var shown []imageutil.Image
	for _, img := range all {
		if img.Err != nil {
			fmt.Fprintf(c.Err, "WARNING: skipping image %s: %v\n", displayName(img.Name), img.Err)
			continue
		}
		if filter.Match(img) {
			shown = append(shown, img)
		}
	}
	// Newest first, as Docker lists them; names break ties.
	slices.SortStableFunc(shown, func(a, b imageutil.Image) int {
		if c := created(b).Compare(created(a)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})

	now := time.Now()
	rows := make([]imageRow, len(shown))
	for i, img := range shown {
		rows[i] = newImageRow(img, !o.noTrunc, now)
	}
	format := formatter.Format(o.format)
	table := formatter.Table{Default: imagesTable, Header: imageHeader}
	switch {
	case o.quiet && (format == "" || format == formatter.TableFormatKey):
		format = "{{.ID}}"
	case o.digests:
		table.Default = imagesDigestTable
		if format.IsTable() && format != "" && format != formatter.TableFormatKey && !strings.Contains(string(format), "{{.Digest}}") {
			format += `\t{{.Digest}}`
		}
	}
	return formatter.Write(c.Out, format, table, rows)
}

func created(img imageutil.Image) time.Time {
	if img.Details == nil {
		return time.Time{}
	}
	return img.Details.Created
}

func newImageRow(img imageutil.Image, trunc bool, now time.Time) imageRow {
	repo, tag := imageutil.RepoTag(img.Name)
	row := imageRow{
		Repository:   repo,
		Tag:          tag,
		Digest:       "<none>",
		ID:           img.ID().String(),
		CreatedSince: formatter.TimeAgo(created(img), now),
		CreatedAt:    formatter.TimeString(created(img)),
		Size:         formatter.HumanSize(img.Details.Size),
	}
	if !img.Dangling() {
		row.Digest = img.Target.Digest.String()
	}
	if trunc {
		row.ID = formatter.TruncateID(row.ID)
	}
	return row
}

// displayName is how an image record is named to the user: its familiar
// name, or the digest of a dangling record.
func displayName(name string) string {
	if imageutil.IsDangling(name) {
		return name
	}
	return reference.Familiar(name)
}

// repoTags and repoDigests are the RepoTags and RepoDigests of `docker
// inspect` for the records of one image.
func repoTags(imgs []imageutil.Image) []string {
	out := []string{}
	for _, img := range imgs {
		if _, tag := reference.RepoTag(img.Name); tag != "<none>" {
			out = append(out, reference.Familiar(img.Name))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func repoDigests(imgs []imageutil.Image) []string {
	out := []string{}
	for _, img := range imgs {
		if img.Dangling() {
			continue
		}
		named, err := distref.ParseNormalizedNamed(img.Name)
		if err != nil {
			continue
		}
		out = append(out, distref.FamiliarName(named)+"@"+img.Target.Digest.String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sameID returns the records of all that have the IMAGE ID id.
func sameID(all []imageutil.Image, id digest.Digest) []imageutil.Image {
	var out []imageutil.Image
	for _, img := range all {
		if id != "" && img.ID() == id {
			out = append(out, img)
		}
	}
	slices.SortFunc(out, func(a, b imageutil.Image) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
