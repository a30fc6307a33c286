package command

import (
	"context"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/formatter"
	"github.com/berth-engine/berth/cli/imageutil"
)

func newImageInspectCommand(c *CLI) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] IMAGE [IMAGE...]",
		Short: "Display detailed information on one or more images",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImageInspect(cmd.Context(), c, format, args)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output: 'json' (the default) or a Go template run for each image")
	return cmd
}

// inspectImage is the JSON of `berth image inspect`, shaped like Docker's.
type inspectImage struct {
	ID           string `json:"Id"`
	RepoTags     []string
	RepoDigests  []string
	Parent       string
	Comment      string
	Created      string
	Author       string
	Architecture string
	Variant      string `json:",omitempty"`
	Os           string
	OsVersion    string `json:",omitempty"`
	Size         int64
	Config       inspectConfig
	RootFS       inspectRootFS
	Metadata     inspectMetadata
	// Descriptor is the target of the image record: the manifest or index
	// the names point at.
	Descriptor ocispec.Descriptor
}

type inspectConfig struct {
	User         string
	ExposedPorts map[string]struct{}
	Env          []string
	Cmd          []string
	Volumes      map[string]struct{}
	WorkingDir   string
	Entrypoint   []string
	Labels       map[string]string
	StopSignal   string `json:",omitempty"`
}

type inspectRootFS struct {
	Type   string
	Layers []string
}

type inspectMetadata struct {
	LastTagTime string
}

func runImageInspect(ctx context.Context, c *CLI, format string, args []string) error {
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	r := imageutil.NewResolver(cl.Images, cl.Content)
	var out []inspectImage
	var errs []error
	for _, arg := range args {
		ii, err := describeImage(ctx, r, arg)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, ii)
	}
	if format == "" || format == formatter.JSONFormatKey {
		if out == nil {
			out = []inspectImage{}
		}
		if err := formatter.WriteJSONIndent(c.Out, out); err != nil {
			return err
		}
	} else if err := formatter.ExecuteInspect(c.Out, format, out); err != nil {
		return err
	}
	return joinErrs(errs)
}

func newInspectImage(img imageutil.Image, cfg *ocispec.Image, names []imageutil.Image) inspectImage {
	d := img.Details
	ii := inspectImage{
		ID:           d.ID().String(),
		RepoTags:     repoTags(names),
		RepoDigests:  repoDigests(names),
		Author:       cfg.Author,
		Architecture: cfg.Architecture,
		Variant:      cfg.Variant,
		Os:           cfg.OS,
		OsVersion:    cfg.OSVersion,
		Size:         d.Size,
		Config: inspectConfig{
			User:         cfg.Config.User,
			ExposedPorts: cfg.Config.ExposedPorts,
			Env:          cfg.Config.Env,
			Cmd:          cfg.Config.Cmd,
			Volumes:      cfg.Config.Volumes,
			WorkingDir:   cfg.Config.WorkingDir,
			Entrypoint:   cfg.Config.Entrypoint,
			Labels:       cfg.Config.Labels,
			StopSignal:   cfg.Config.StopSignal,
		},
		RootFS:     inspectRootFS{Type: cfg.RootFS.Type, Layers: []string{}},
		Descriptor: img.Target,
	}
	if cfg.Created != nil {
		ii.Created = cfg.Created.UTC().Format(time.RFC3339Nano)
	}
	for _, l := range cfg.RootFS.DiffIDs {
		ii.RootFS.Layers = append(ii.RootFS.Layers, l.String())
	}
	var last time.Time
	for _, n := range names {
		if !n.Dangling() && n.UpdatedAt.After(last) {
			last = n.UpdatedAt
		}
	}
	ii.Metadata.LastTagTime = last.UTC().Format(time.RFC3339Nano)
	return ii
}
