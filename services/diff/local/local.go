// Package local implements the diff service in process: it applies layer
// blobs from a content store onto mounts and writes the difference between
// two mounts as a layer blob.
package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/diff"
	"github.com/berth-engine/berth/services/diff/layer"
)

// Docker's names of layer media types, which images loaded from `docker
// save` archives carry.
const (
	mediaTypeDockerLayer     = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// Differ applies and computes layers; it implements diff.Applier and
// diff.Comparer.
type Differ struct {
	cs        content.Store
	mountBase string
	// noFastPath mounts every mount list, even those the Differ could use
	// as plain directories, so that tests cover the mounting path.
	noFastPath bool
}

var (
	_ diff.Applier  = (*Differ)(nil)
	_ diff.Comparer = (*Differ)(nil)
)

// New returns a Differ reading and writing blobs in cs; mounts that must be
// mounted to be read or written go in temporary folders under mountBase
// (os.TempDir when "").
func New(cs content.Store, mountBase string) *Differ {
	return &Differ{cs: cs, mountBase: mountBase}
}

// compression is how a layer blob is compressed.
type compression string

const (
	uncompressed compression = "uncompressed"
	gzipped      compression = "gzip"
	zstandard    compression = "zstd"
)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// detect reads the compression of a blob from its first bytes, whatever its
// media type says.
func detect(br *bufio.Reader) compression {
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return gzipped
	case bytes.HasPrefix(head, zstdMagic):
		return zstandard
	}
	return uncompressed
}

// decompressor returns the uncompressed stream of br and a function that
// releases it.
func decompressor(c compression, br *bufio.Reader) (io.Reader, func(), error) {
	switch c {
	case gzipped:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case zstandard:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

// Apply unpacks the layer blob desc onto mounts and returns the descriptor
// of the uncompressed layer, whose digest is the diff ID. The blob is read
// and decompressed (gzip, zstd or none, told by its first bytes) as a
// stream. A single overlay mount is written through its upper directory
// and a single read-write bind mount through its source, without mounting;
// anything else is mounted in a temporary folder.
func (d *Differ) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount) (ocispec.Descriptor, error) {
	ra, err := d.cs.ReaderAt(ctx, desc)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("opening layer %s: %w", desc.Digest, err)
	}
	defer ra.Close()

	br := bufio.NewReaderSize(content.NewReader(ra), readaheadChunk)
	comp := detect(br)
	zr, release, err := decompressor(comp, br)
	if err != nil {
		return ocispec.Descriptor{}, corrupt(desc, comp, err)
	}
	defer release()

	digester := digest.Canonical.Digester()
	rd := newReadahead(zr, digester.Hash())
	defer rd.Close()

	err = d.withApplyRoot(ctx, mounts, func(root string, opts ...layer.ApplyOpt) error {
		_, err := layer.Apply(ctx, root, rd, opts...)
		return err
	})
	rd.Close()
	if srcErr := rd.sourceErr(); srcErr != nil {
		if errors.Is(srcErr, context.Canceled) || errors.Is(srcErr, context.DeadlineExceeded) {
			return ocispec.Descriptor{}, srcErr
		}
		return ocispec.Descriptor{}, corrupt(desc, comp, srcErr)
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("applying layer %s: %w", desc.Digest, err)
	}
	return ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayer,
		Digest:    digester.Digest(),
		Size:      rd.n,
	}, nil
}

func corrupt(desc ocispec.Descriptor, c compression, err error) error {
	return fmt.Errorf("layer %s is corrupt: reading its %s stream: %v: load or pull the image again: %w",
		desc.Digest, c, err, errdefs.ErrInvalidArgument)
}

// withApplyRoot calls fn with a directory where the layer must be written
// for mounts, and the options that directory needs.
func (d *Differ) withApplyRoot(ctx context.Context, mounts []mount.Mount, fn func(root string, opts ...layer.ApplyOpt) error) error {
	if len(mounts) == 1 && !d.noFastPath {
		m := mounts[0]
		if upper, lowers, ok := overlayDirs(m); ok && upper != "" {
			return fn(upper, layer.WithOverlayWhiteouts(), layer.WithParents(lowers))
		}
		if src, ok := bindDir(m); ok && !hasOption(m.Options, "ro") {
			return fn(src)
		}
	}
	if len(mounts) == 0 {
		return fmt.Errorf("no mounts to apply the layer to: %w", errdefs.ErrInvalidArgument)
	}
	return mount.WithTempMountIn(ctx, d.mountBase, mounts, func(root string) error { return fn(root) })
}

// overlayDirs returns the upper and lower directories of an overlay mount
// that berth can read and write directly: absolute paths, no sub-path
// target, no options that change where overlayfs keeps its markers.
func overlayDirs(m mount.Mount) (upper string, lowers []string, ok bool) {
	if m.Type != "overlay" || m.Target != "" {
		return "", nil, false
	}
	for _, o := range m.Options {
		switch {
		case strings.HasPrefix(o, "upperdir="):
			upper = strings.TrimPrefix(o, "upperdir=")
		case strings.HasPrefix(o, "lowerdir="):
			v := strings.TrimPrefix(o, "lowerdir=")
			if strings.Contains(v, `\`) {
				return "", nil, false // escaped separators: leave it to the kernel
			}
			lowers = strings.Split(v, ":")
		case o == "userxattr":
			return "", nil, false
		}
	}
	if len(lowers) == 0 || (upper != "" && !filepath.IsAbs(upper)) {
		return "", nil, false
	}
	for _, p := range lowers {
		if !filepath.IsAbs(p) {
			return "", nil, false // relative to a working directory, or "::" data-only lowers
		}
	}
	return upper, lowers, true
}

// bindDir returns the source of a bind mount that can be read or written
// directly.
func bindDir(m mount.Mount) (string, bool) {
	if m.Type != "bind" || m.Target != "" || !filepath.IsAbs(m.Source) {
		return "", false
	}
	return m.Source, true
}

func hasOption(options []string, o string) bool {
	for _, x := range options {
		if x == o {
			return true
		}
	}
	return false
}

// Compare writes the difference from lower to upper as a layer into the
// content store: gzip-compressed unless WithMediaType asks for another
// media type. The blob gets the label diff.LabelUncompressed with its diff
// ID, and the labels given. An overlay upper mount whose lower directories
// are what lower describes is read from its upper directory alone; bind
// mounts are read from their sources; anything else is mounted read-only.
func (d *Differ) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...diff.CompareOpt) (ocispec.Descriptor, error) {
	var o diff.CompareOpts
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	var comp compression
	switch o.MediaType {
	case "", ocispec.MediaTypeImageLayerGzip, mediaTypeDockerLayerGzip:
		comp = gzipped
		if o.MediaType == "" {
			o.MediaType = ocispec.MediaTypeImageLayerGzip
		}
	case ocispec.MediaTypeImageLayerZstd:
		comp = zstandard
	case ocispec.MediaTypeImageLayer, mediaTypeDockerLayer:
		comp = uncompressed
	default:
		return ocispec.Descriptor{}, fmt.Errorf("cannot write a layer of media type %q: use %s, %s or %s: %w",
			o.MediaType, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd, ocispec.MediaTypeImageLayer, errdefs.ErrInvalidArgument)
	}
	if o.Ref == "" {
		o.Ref = "diff-" + uuid.NewString()
	}
	w, err := d.cs.Writer(ctx, content.WithRef(o.Ref))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("opening content ingest %q for the diff: %w", o.Ref, err)
	}
	defer w.Close()

	var out *layerWriter
	write := func(lowerRoot, upperRoot string, dopts ...layer.DiffOpt) error {
		if err := w.Truncate(0); err != nil {
			return fmt.Errorf("resetting content ingest %q: %w", o.Ref, err)
		}
		lw, err := newLayerWriter(w, comp)
		if err != nil {
			return err
		}
		if err := layer.WriteDiff(ctx, lw, lowerRoot, upperRoot, dopts...); err != nil {
			return err
		}
		if err := lw.Close(); err != nil {
			return fmt.Errorf("writing the diff to the content store: %w", err)
		}
		out = lw
		return nil
	}
	if err := d.compare(ctx, lower, upper, write); err != nil {
		w.Close()
		if aerr := d.cs.Abort(context.WithoutCancel(ctx), o.Ref); aerr != nil && !errdefs.IsNotFound(aerr) {
			err = errors.Join(err, fmt.Errorf("removing content ingest %q: %w", o.Ref, aerr))
		}
		return ocispec.Descriptor{}, fmt.Errorf("computing the diff: %w", err)
	}

	diffID := out.diffID.Digest()
	labels := map[string]string{}
	for k, v := range o.Labels {
		labels[k] = v
	}
	labels[diff.LabelUncompressed] = diffID.String()
	desc := ocispec.Descriptor{MediaType: o.MediaType, Digest: out.blob.Digest(), Size: out.size.n}
	if err := w.Commit(ctx, desc.Size, desc.Digest, content.WithLabels(labels)); err != nil {
		if !errdefs.IsAlreadyExists(err) {
			return ocispec.Descriptor{}, fmt.Errorf("committing diff %s: %w", desc.Digest, err)
		}
		// The same layer was written before; it still gets the labels.
		var paths []string
		for k := range labels {
			paths = append(paths, "labels."+k)
		}
		if _, err := d.cs.Update(ctx, content.Info{Digest: desc.Digest, Labels: labels}, paths...); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("labelling existing diff %s: %w", desc.Digest, err)
		}
	}
	return desc, nil
}

// compare calls write with directories holding lower and upper.
func (d *Differ) compare(ctx context.Context, lower, upper []mount.Mount, write func(lower, upper string, opts ...layer.DiffOpt) error) error {
	if len(upper) == 0 {
		return fmt.Errorf("no upper mounts to compare: %w", errdefs.ErrInvalidArgument)
	}
	if len(upper) == 1 && !d.noFastPath {
		if dir, lowers, ok := overlayDirs(upper[0]); ok && dir != "" && sameLowers(lower, lowers) {
			err := write("", dir, layer.WithUpperOverlay())
			if !errdefs.IsNotImplemented(err) {
				return err
			}
			// The upper directory holds what a layer cannot express
			// (redirects, metacopy): compare the mounted trees.
		} else if udir, ok := bindDir(upper[0]); ok {
			if len(lower) == 0 {
				return withEmptyDir(d.mountBase, func(empty string) error { return write(empty, udir) })
			}
			if ldir, ok := bindDir(lower[0]); ok && len(lower) == 1 {
				return write(ldir, udir)
			}
		}
	}
	return mount.WithTempMountIn(ctx, d.mountBase, readOnly(upper), func(upperRoot string) error {
		if len(lower) == 0 {
			return withEmptyDir(d.mountBase, func(empty string) error { return write(empty, upperRoot) })
		}
		return mount.WithTempMountIn(ctx, d.mountBase, readOnly(lower), func(lowerRoot string) error {
			return write(lowerRoot, upperRoot)
		})
	})
}

// sameLowers reports whether the mounts show exactly the overlay lower
// directories lowers (topmost first); no mounts show empty lowers, as an
// overlay snapshot without parent has.
func sameLowers(mounts []mount.Mount, lowers []string) bool {
	if len(mounts) == 0 {
		for _, l := range lowers {
			if !isEmptyDir(l) {
				return false
			}
		}
		return true
	}
	if len(mounts) != 1 {
		return false
	}
	m := mounts[0]
	if upper, ls, ok := overlayDirs(m); ok && upper == "" {
		return equalPaths(ls, lowers)
	}
	if src, ok := bindDir(m); ok {
		return len(lowers) == 1 && filepath.Clean(src) == filepath.Clean(lowers[0])
	}
	return false
}

func isEmptyDir(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	return len(names) == 0 && errors.Is(err, io.EOF)
}

func equalPaths(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if filepath.Clean(a[i]) != filepath.Clean(b[i]) {
			return false
		}
	}
	return true
}

// readOnly returns the mounts with "ro" added, so that comparing never
// writes to a snapshot.
func readOnly(mounts []mount.Mount) []mount.Mount {
	out := make([]mount.Mount, len(mounts))
	for i, m := range mounts {
		m.Options = append([]string(nil), m.Options...)
		if !hasOption(m.Options, "ro") {
			m.Options = append(m.Options, "ro")
		}
		out[i] = m
	}
	return out
}
