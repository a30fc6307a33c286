package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/cli/imageutil"
	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/reference"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/images/archive"
	"github.com/berth-engine/berth/services/images/unpack"
	"github.com/berth-engine/berth/services/leases"
)

// loadLeaseExpiry bounds how long the blobs of a load that died half-way
// (berth killed) are kept before garbage collection takes them.
const loadLeaseExpiry = time.Hour

// cleanupTimeout bounds the clean-up after a failed load, which runs even
// when the command was interrupted.
const cleanupTimeout = time.Minute

type loadOptions struct {
	input    string
	quiet    bool
	noUnpack bool
}

func newLoadCommand(c *CLI) *cobra.Command {
	var o loadOptions
	cmd := &cobra.Command{
		Use:   "load [OPTIONS]",
		Short: "Load images from a tar archive (docker save or OCI layout) or STDIN",
		Long: `Load images from a tar archive (docker save or OCI layout) or STDIN.

Each image is unpacked into the snapshotter (--snapshotter, or berthd's
default): every layer becomes a committed snapshot named by its chain ID,
shared by the images that have that layer. When unpacking fails, the load
fails and leaves nothing behind. --no-unpack only stores the blobs.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLoad(cmd.Context(), c, o)
		},
	}
	cmd.Flags().StringVarP(&o.input, "input", "i", "", "read from a tar archive file instead of STDIN")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "suppress the progress output")
	cmd.Flags().BoolVar(&o.noUnpack, "no-unpack", false, "store the images without unpacking them into snapshots")
	return cmd
}

func runLoad(ctx context.Context, c *CLI, o loadOptions) error {
	input, quiet := o.input, o.quiet
	var in io.Reader = c.In
	var total int64
	if input == "" || input == "-" {
		if c.In == nil || c.isTerminal(c.In) {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "requested load from stdin, but stdin is empty or a terminal: use -i FILE or redirect")
		}
	} else {
		f, err := os.Open(input)
		if err != nil {
			return fmt.Errorf("opening the archive to load: %w", err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			total = st.Size()
		}
		in = f
	}

	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	snapshotter := ""
	if !o.noUnpack {
		if snapshotter, err = c.Snapshotter(ctx, cl); err != nil {
			return err
		}
	}
	var p *progress
	if !quiet && c.isTerminal(c.Out) {
		p = newProgress(c.Out, "Loading", total)
		in = progressReader{r: in, p: p}
	}
	r := imageutil.NewResolver(cl.Images, cl.Content)
	loaded, err := load(ctx, cl, r, in, snapshotter, c.Err)
	p.done()
	if err != nil {
		return err
	}
	for _, l := range loaded {
		if !imageutil.IsDangling(l.Name) {
			fmt.Fprintf(c.Out, "Loaded image: %s\n", reference.Familiar(l.Name))
			continue
		}
		d, err := r.Details(ctx, l.Target)
		if err != nil {
			return fmt.Errorf("reading the loaded image %s: %w", l.Target.Digest, err)
		}
		fmt.Fprintf(c.Out, "Loaded image ID: %s\n", d.ID())
	}
	return nil
}

// load imports the archive under a lease, unpacks its images into
// snapshotter (unless it is "") and names them. On any failure, the records
// it made are undone and the lease is deleted synchronously, so nothing of
// the archive stays: neither blobs nor snapshots.
func load(ctx context.Context, cl *client.Client, r *imageutil.Resolver, in io.Reader, snapshotter string, warn io.Writer) (_ []images.Image, err error) {
	lease, err := cl.Leases.Create(ctx, leases.WithExpiration(loadLeaseExpiry),
		leases.WithLabels(map[string]string{"berth.io/purpose": "load"}))
	if err != nil {
		return nil, fmt.Errorf("creating a lease for the load: %w", err)
	}
	var undo []func(context.Context) error
	defer func() {
		// Clean up even when ctx was cancelled (Ctrl-C).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i](cctx) // best effort; the lease goes below anyway
			}
			if lerr := cl.Leases.Delete(cctx, lease, leases.SynchronousDelete()); lerr != nil {
				err = fmt.Errorf("%w (and removing what was imported failed: %v)", err, lerr)
			}
			return
		}
		// The records hold the content now; the lease can go.
		cl.Leases.Delete(cctx, lease)
	}()

	imported, err := archive.Import(leases.WithLease(ctx, lease.ID), cl.Content, in)
	if err != nil {
		return nil, fmt.Errorf("loading the archive: %w", err)
	}
	if len(imported) == 0 {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "the archive holds no image")
	}
	// Check every name before making any record.
	for i, img := range imported {
		if img.Name == "" || imageutil.IsDangling(img.Name) {
			imported[i].Name = img.Target.Digest.String()
			continue
		}
		if imported[i].Name, err = tagName(img.Name); err != nil {
			return nil, fmt.Errorf("the archive names an image %q: %w", img.Name, err)
		}
	}
	if snapshotter != "" {
		// Under the lease until the records hold the config blobs, which
		// hold the snapshots.
		if err := unpackImages(leases.WithLease(ctx, lease.ID), cl, snapshotter, imported, warn); err != nil {
			return nil, err
		}
	}
	// Each record gets the summary that listings show, so that they need
	// not read the blobs. Without it (an image this berth cannot read
	// whole), listings read the blobs.
	for _, img := range imported {
		var labels map[string]string
		if d, err := r.Details(ctx, img.Target); err == nil {
			labels = r.SummaryLabels(img.Target, d)
		}
		if imageutil.IsDangling(img.Name) {
			// An unnamed image is kept by a record named by its digest,
			// unless a name in this archive or before points at it.
			named, err := hasName(ctx, cl.Images, imported, img.Target.Digest.String())
			if err != nil {
				return nil, err
			}
			if named {
				continue
			}
		}
		prev, created, err := setName(ctx, cl.Images, img.Name, img.Target, labels)
		if err != nil {
			return nil, err
		}
		undo = append(undo, undoName(cl.Images, img.Name, prev, created))
	}
	// Unnamed records of images that have a name now are dropped. This is
	// tidying, not loading: a failure leaves an extra <none> row, nothing worse.
	for _, img := range imported {
		if !imageutil.IsDangling(img.Name) {
			dropDangling(ctx, cl.Images, img.Target)
		}
	}
	return imported, nil
}

// hasName reports whether a named record, stored or about to be, points
// at target.
func hasName(ctx context.Context, is images.Store, imported []images.Image, target string) (bool, error) {
	for _, img := range imported {
		if !imageutil.IsDangling(img.Name) && img.Target.Digest.String() == target {
			return true, nil
		}
	}
	recs, err := is.List(ctx, "target.digest=="+target)
	if err != nil {
		return false, fmt.Errorf("listing the names of %s: %w", target, err)
	}
	for _, r := range recs {
		if !imageutil.IsDangling(r.Name) {
			return true, nil
		}
	}
	return false, nil
}

// undoName returns what puts the record name back as it was.
func undoName(is images.Store, name string, prev ocispec.Descriptor, created bool) func(context.Context) error {
	return func(ctx context.Context) error {
		if created {
			return is.Delete(ctx, name)
		}
		if prev.Digest == "" {
			return nil
		}
		_, err := is.Update(ctx, images.Image{Name: name, Target: prev}, "target")
		return err
	}
}

// unpackImages unpacks each image into snapshotter, once per target.
func unpackImages(ctx context.Context, cl *client.Client, snapshotter string, imgs []images.Image, warn io.Writer) error {
	sn := cl.Snapshotter(snapshotter)
	seen := map[digest.Digest]bool{}
	for _, img := range imgs {
		if seen[img.Target.Digest] {
			continue
		}
		seen[img.Target.Digest] = true
		// The name is only for messages: the one the user knows.
		shown := images.Image{Name: displayName(img.Name), Target: img.Target}
		_, err := unpack.Unpack(ctx, cl.Content, sn, cl.Diff, shown, unpack.WithSnapshotterName(snapshotter))
		if errors.Is(err, unpack.ErrNoPlatform) {
			// An image for other machines loads, as with Docker; it cannot
			// run here, so there is nothing to unpack.
			fmt.Fprintf(warn, "Warning: image %s has no manifest for %s: not unpacked\n", shown.Name, platforms.DefaultString())
			continue
		}
		if err != nil {
			return fmt.Errorf("unpacking into snapshotter %q: %w", snapshotter, err)
		}
	}
	return nil
}
