package command

import (
	"context"
	"fmt"

	distref "github.com/distribution/reference"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/cli/formatter"
	"github.com/berth-engine/berth/cli/imageutil"
	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/images"
)

func newRmiCommand(c *CLI) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rmi [OPTIONS] IMAGE [IMAGE...]",
		Short: "Remove one or more images",
		Long: `Remove one or more images.

A name removes that name (Untagged); when it was the image's last name, the
image is deleted and its blobs and snapshots are freed before the command
returns (Deleted).
An IMAGE ID removes the image with all its names; an image whose names span
several repositories needs -f.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRmi(cmd.Context(), c, force, args)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove an image by ID even when several repositories name it")
	return cmd
}

func runRmi(ctx context.Context, c *CLI, force bool, args []string) error {
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, arg := range args {
		// Each argument sees the records as the previous ones left them.
		r := imageutil.NewResolver(cl.Images, cl.Content)
		if err := removeImage(ctx, c, cl, r, arg, force); err != nil {
			errs = append(errs, err)
		}
	}
	return joinErrs(errs)
}

func removeImage(ctx context.Context, c *CLI, cl *client.Client, r *imageutil.Resolver, arg string, force bool) error {
	m, err := r.Resolve(ctx, arg)
	if err != nil {
		return err
	}
	if m.By == imageutil.ByID && !force {
		if repos := repositories(m.Images); len(repos) > 1 {
			return errdefs.Errorf(errdefs.ErrFailedPrecondition,
				"conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", formatter.TruncateID(m.ID().String()))
		}
	}
	// The records that stay: those of the same target that were not asked
	// for. Without any, the image goes, and its blobs with it.
	remove := map[string]bool{}
	for _, img := range m.Images {
		remove[img.Name] = true
	}
	var last []string
	for _, target := range targets(m.Images) {
		recs, err := cl.Images.List(ctx, "target.digest=="+target)
		if err != nil {
			return fmt.Errorf("listing the names of %s: %w", target, err)
		}
		stays := false
		for _, rec := range recs {
			stays = stays || !remove[rec.Name]
		}
		if !stays {
			last = append(last, target)
		}
	}
	for i, img := range m.Images {
		var opts []images.DeleteOpt
		// The last record of a target to go waits for garbage collection,
		// so that `rmi` returns with the blobs freed.
		if isLastOfTarget(m.Images[i+1:], img, last) {
			opts = append(opts, images.SynchronousDelete())
		}
		if err := cl.Images.Delete(ctx, img.Name, opts...); err != nil {
			if errdefs.IsNotFound(err) {
				continue // removed meanwhile: the outcome is the same
			}
			return fmt.Errorf("removing %s: %w", displayName(img.Name), err)
		}
		if !img.Dangling() {
			fmt.Fprintf(c.Out, "Untagged: %s\n", displayName(img.Name))
		}
	}
	if len(last) > 0 {
		id := m.ID()
		if id == "" {
			id = m.Images[0].Target.Digest
		}
		fmt.Fprintf(c.Out, "Deleted: %s\n", id)
	}
	return nil
}

// isLastOfTarget reports whether img is the last of the records being
// removed that points at a target that goes.
func isLastOfTarget(rest []imageutil.Image, img imageutil.Image, last []string) bool {
	t := img.Target.Digest.String()
	for _, l := range last {
		if l != t {
			continue
		}
		for _, r := range rest {
			if r.Target.Digest == img.Target.Digest {
				return false
			}
		}
		return true
	}
	return false
}

func targets(imgs []imageutil.Image) []string {
	var out []string
	seen := map[string]bool{}
	for _, img := range imgs {
		t := img.Target.Digest.String()
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// repositories returns the distinct repositories that name the records.
func repositories(imgs []imageutil.Image) []string {
	var out []string
	seen := map[string]bool{}
	for _, img := range imgs {
		if img.Dangling() {
			continue
		}
		named, err := distref.ParseNormalizedNamed(img.Name)
		if err != nil || seen[named.Name()] {
			continue
		}
		seen[named.Name()] = true
		out = append(out, named.Name())
	}
	return out
}
