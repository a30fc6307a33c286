package command

import (
	"context"
	"fmt"

	distref "github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/imageutil"
	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/reference"
	"github.com/berth-engine/berth/services/images"
)

func newTagCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTag(cmd.Context(), c, args[0], args[1])
		},
	}
}

func runTag(ctx context.Context, c *CLI, source, newName string) error {
	name, err := tagName(newName)
	if err != nil {
		return err
	}
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	r := imageutil.NewResolver(cl.Images, cl.Content)
	m, err := r.Resolve(ctx, source)
	if err != nil {
		return err
	}
	src := m.Images[0]
	var labels map[string]string
	if src.Details != nil {
		labels = r.SummaryLabels(src.Target, src.Details)
	}
	if _, _, err := setName(ctx, cl.Images, name, src.Target, labels); err != nil {
		return err
	}
	return dropDangling(ctx, cl.Images, src.Target)
}

// tagName normalises the name a tag or a load gives an image; a digest
// cannot be a tag, since the digest is fixed by the content.
func tagName(arg string) (string, error) {
	name, err := reference.Normalize(arg)
	if err != nil {
		return "", err
	}
	named, _ := distref.ParseNormalizedNamed(name)
	if _, ok := named.(distref.Digested); ok {
		return "", errdefs.Errorf(errdefs.ErrInvalidArgument, "refusing to create a tag with a digest reference %q: give a tag (NAME[:TAG])", arg)
	}
	return name, nil
}

// setName points the image record name at target, creating it or moving
// it from the image it named before, and sets labels on it (the summary
// that listings show). It returns what the record named before (zero when
// it is new).
func setName(ctx context.Context, is images.Store, name string, target ocispec.Descriptor, labels map[string]string) (previous ocispec.Descriptor, created bool, err error) {
	_, err = is.Create(ctx, images.Image{Name: name, Target: target, Labels: labels})
	switch {
	case err == nil:
		created = true
	case errdefs.IsAlreadyExists(err):
		old, err := is.Get(ctx, name)
		if err != nil {
			return previous, false, fmt.Errorf("tagging %s: %w", reference.Familiar(name), err)
		}
		previous = old.Target
		var fields []string
		if old.Target.Digest != target.Digest || old.Target.MediaType != target.MediaType {
			fields = append(fields, "target")
		}
		for k, v := range labels {
			if old.Labels[k] != v {
				fields = append(fields, "labels."+k)
			}
		}
		if len(fields) > 0 {
			if _, err := is.Update(ctx, images.Image{Name: name, Target: target, Labels: labels}, fields...); err != nil {
				return previous, false, fmt.Errorf("tagging %s: %w", reference.Familiar(name), err)
			}
		}
	default:
		return previous, false, fmt.Errorf("tagging %s: %w", reference.Familiar(name), err)
	}
	return previous, created, nil
}

// dropDangling removes the record that kept target alive while it had no
// name, once it has one.
func dropDangling(ctx context.Context, is images.Store, target ocispec.Descriptor) error {
	if err := is.Delete(ctx, target.Digest.String()); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing the record of the formerly unnamed image %s: %w", target.Digest, err)
	}
	return nil
}
