package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
)

// Import reads an image archive from r in one pass and returns its images:
// an OCI image layout or a `docker save` tarball (Docker 25 writes both at
// once: the OCI index is then preferred, names come from either), plain or
// gzip-compressed.
//
// Every file that may be a blob is streamed into cs as it is read and
// verified against its name when its name is a digest. Manifests of the
// archive get garbage collection labels for their config and layers, and
// indexes for their manifests; a docker save tarball gets a Docker schema 2
// manifest, built deterministically so that a save and load round trip keeps
// its digest.
//
// An image without a name is returned with its target's digest as Name.
// Import does not create image records: the caller does, holding a lease so
// that the blobs are not collected before that. On failure, every ingest
// Import opened is aborted; blobs already committed are left to that lease
// and to garbage collection.
func Import(ctx context.Context, cs content.Store, r io.Reader) (_ []images.Image, retErr error) {
	imp, err := newImporter(cs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			imp.abortAll(context.WithoutCancel(ctx))
		}
	}()
	if err := imp.read(ctx, r); err != nil {
		return nil, err
	}
	return imp.resolve(ctx)
}

// entry is what the read pass keeps of one archive member.
type entry struct {
	// desc is the digest and size of a file streamed into the store.
	desc ocispec.Descriptor
	// head holds the first bytes of a streamed file, to detect compression.
	head []byte
	// data is the content of a metadata file (index.json, manifest.json,
	// oci-layout, repositories), which is kept in memory and not stored.
	data []byte
	// link is the archive name a symlink or hard link points to; links are
	// replaced by their target once the whole archive has been read.
	link     string
	linkType byte
}

type importer struct {
	cs        content.Store
	refPrefix string
	entries   map[string]*entry
	// open holds the refs of ingests opened and not yet committed.
	open map[string]bool
	// fromArchive holds the digests of blobs read from the archive (as
	// opposed to found in the store).
	fromArchive map[digest.Digest]bool
	buf         []byte
}

func newImporter(cs content.Store) (*importer, error) {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("making an ingest ref: %w", err)
	}
	return &importer{
		cs:          cs,
		refPrefix:   "import-" + hex.EncodeToString(id[:]) + "-",
		entries:     map[string]*entry{},
		open:        map[string]bool{},
		fromArchive: map[digest.Digest]bool{},
		buf:         make([]byte, copyBufferSize),
	}, nil
}

// abortAll removes the ingests of a failed import.
func (imp *importer) abortAll(ctx context.Context) {
	for ref := range imp.open {
		// NotFound: the store removed it already, as it does for a digest
		// mismatch at commit.
		_ = imp.cs.Abort(ctx, ref)
	}
}

// metadataFiles are the top-level files that describe an archive rather
// than hold a blob.
var metadataFiles = map[string]bool{
	"index.json":            true,
	"manifest.json":         true,
	ocispec.ImageLayoutFile: true,
	"repositories":          true,
}

// isLegacyFile reports whether name is one of the per-layer files of the
// pre-1.10 docker save format (<id>/VERSION, <id>/json), which no manifest
// refers to.
func isLegacyFile(name string) bool {
	dir, base := path.Split(name)
	return dir != "" && (base == "VERSION" || base == "json")
}

// read is the single pass over the tar.
func (imp *importer) read(ctx context.Context, r io.Reader) error {
	br := bufio.NewReaderSize(&ctxReader{ctx: ctx, r: r}, copyBufferSize)
	magic, err := br.Peek(2)
	if len(magic) == 0 {
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading image archive: %w", err)
		}
		return fmt.Errorf("not an image archive: the input is empty: %w", errdefs.ErrInvalidArgument)
	}
	var src io.Reader = br
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("not an image archive: the input starts like gzip but is not: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		defer zr.Close()
		src = zr
	}
	tr := tar.NewReader(src)
	last := ""
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return readError(err, last)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		last = hdr.Name
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeXGlobalHeader:
			continue
		case tar.TypeReg:
			if name == "" {
				return fmt.Errorf("archive entry %q is a file named like the archive root: %w", hdr.Name, errdefs.ErrInvalidArgument)
			}
			if err := imp.readFile(ctx, name, hdr, tr); err != nil {
				return err
			}
		case tar.TypeSymlink:
			target, err := symlinkTarget(name, hdr.Linkname)
			if err != nil {
				return err
			}
			imp.entries[name] = &entry{link: target, linkType: tar.TypeSymlink}
		case tar.TypeLink:
			target, err := cleanName(hdr.Linkname)
			if err != nil || target == "" || imp.entries[target] == nil {
				return fmt.Errorf("archive entry %q is a hard link to %q, which is not an earlier file of the archive: %w",
					hdr.Name, hdr.Linkname, errdefs.ErrInvalidArgument)
			}
			imp.entries[name] = &entry{link: target, linkType: tar.TypeLink}
		default:
			return fmt.Errorf("archive entry %q is %s: an image archive holds only files, directories and links: %w",
				hdr.Name, typeName(hdr.Typeflag), errdefs.ErrInvalidArgument)
		}
	}
}

// readError explains an error of the tar or gzip reader.
func readError(err error, last string) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		if last == "" {
			return fmt.Errorf("archive is truncated: it ends inside its first header: %w", errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("archive is truncated: it ends inside entry %q or the header after it: save or copy the archive again: %w", last, errdefs.ErrInvalidArgument)
	}
	if errors.Is(err, tar.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) {
		if last == "" {
			return fmt.Errorf("not an image archive: the input is not a tar (%v): expected a docker save tarball or an OCI layout: %w", err, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("image archive is corrupt after entry %q: %v: %w", last, err, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("reading image archive: %w", err)
}

func truncated(name string, declared, got int64) error {
	return fmt.Errorf("archive is truncated: entry %q declares %d bytes but the archive ends after %d of them: save or copy the archive again: %w",
		name, declared, got, errdefs.ErrInvalidArgument)
}

func typeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "a character device"
	case tar.TypeBlock:
		return "a block device"
	case tar.TypeFifo:
		return "a fifo"
	}
	return fmt.Sprintf("of tar type %q", t)
}

// cleanName returns the archive name of a tar entry ("./index.json" is
// "index.json", the root is ""), refusing absolute names and ".." anywhere,
// since extracting such a name would escape the archive.
func cleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("archive entry %q has an absolute name, which would escape the archive: %w", name, errdefs.ErrInvalidArgument)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("archive entry %q has a \"..\" component, which could escape the archive: %w", name, errdefs.ErrInvalidArgument)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// symlinkTarget resolves the target of a symlink in the archive, which must
// stay inside it.
func symlinkTarget(name, linkname string) (string, error) {
	if !path.IsAbs(linkname) {
		target := path.Join(path.Dir(name), linkname)
		if target != ".." && !strings.HasPrefix(target, "../") && target != "." {
			return target, nil
		}
	}
	return "", fmt.Errorf("archive entry %q is a symlink to %q, which points outside the archive: %w", name, linkname, errdefs.ErrInvalidArgument)
}

// readFile keeps a metadata file in memory or streams a blob into the store.
func (imp *importer) readFile(ctx context.Context, name string, hdr *tar.Header, r io.Reader) error {
	if metadataFiles[name] {
		if hdr.Size > images.MaxMetadataSize {
			return fmt.Errorf("archive entry %q is %d bytes, more than the %d allowed for image metadata: %w",
				name, hdr.Size, images.MaxMetadataSize, errdefs.ErrInvalidArgument)
		}
		data := make([]byte, hdr.Size)
		n, err := io.ReadFull(r, data)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return truncated(name, hdr.Size, int64(n))
			}
			return readError(err, name)
		}
		imp.entries[name] = &entry{data: data}
		return nil
	}
	if isLegacyFile(name) {
		// Read through it so that a truncation is reported here.
		if n, err := io.CopyBuffer(io.Discard, r, imp.buf); err != nil {
			return readFileError(err, name, hdr.Size, n)
		}
		return nil
	}
	var expected digest.Digest
	if strings.HasPrefix(name, "blobs/") {
		var err error
		if expected, err = blobDigest(name); err != nil {
			return err
		}
	}
	e, err := imp.ingest(ctx, name, hdr.Size, expected, r)
	if err != nil {
		return err
	}
	imp.entries[name] = e
	return nil
}

func readFileError(err error, name string, declared, got int64) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return truncated(name, declared, got)
	}
	return readError(err, name)
}

// blobDigest returns the digest that a blobs/<alg>/<hex> name declares.
func blobDigest(name string) (digest.Digest, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 3 {
		return "", fmt.Errorf("archive entry %q is not named blobs/<algorithm>/<hex>: %w", name, errdefs.ErrInvalidArgument)
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2])
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("archive entry %q is not named by a valid digest: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	if d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("archive entry %q uses digest algorithm %s: only sha256 is supported: %w", name, d.Algorithm(), errdefs.ErrNotImplemented)
	}
	return d, nil
}

// headSize is how much of each blob is kept to detect its format: a tar
// header is 512 bytes.
const headSize = 512

// headWriter passes data through, keeping its first bytes.
type headWriter struct {
	w    io.Writer
	head []byte
}

func (h *headWriter) Write(p []byte) (int, error) {
	if n := headSize - len(h.head); n > 0 {
		h.head = append(h.head, p[:min(n, len(p))]...)
	}
	return h.w.Write(p)
}

// ingest streams one archive file into the store. When expected is set
// (the file is named by its digest) a blob already in the store is not
// written again.
func (imp *importer) ingest(ctx context.Context, name string, size int64, expected digest.Digest, r io.Reader) (*entry, error) {
	ref := imp.refPrefix + name
	w, err := imp.cs.Writer(ctx, content.WithRef(ref), content.WithDescriptor(ocispec.Descriptor{Digest: expected, Size: size}))
	if err != nil {
		if errdefs.IsAlreadyExists(err) && expected != "" {
			hw := &headWriter{w: io.Discard}
			if n, err := io.CopyBuffer(hw, r, imp.buf); err != nil {
				return nil, readFileError(err, name, size, n)
			}
			imp.fromArchive[expected] = true
			return &entry{desc: ocispec.Descriptor{Digest: expected, Size: size}, head: hw.head}, nil
		}
		return nil, fmt.Errorf("importing archive entry %q: %w", name, err)
	}
	imp.open[ref] = true
	fail := func(err error) (*entry, error) {
		w.Close()
		if aerr := imp.cs.Abort(context.WithoutCancel(ctx), ref); aerr == nil || errdefs.IsNotFound(aerr) {
			delete(imp.open, ref)
		}
		return nil, err
	}
	// A fresh random ref has no data; be safe if the store says otherwise.
	if st, err := w.Status(); err != nil {
		return fail(fmt.Errorf("importing archive entry %q: %w", name, err))
	} else if st.Offset != 0 {
		if err := w.Truncate(0); err != nil {
			return fail(fmt.Errorf("importing archive entry %q: %w", name, err))
		}
	}
	hw := &headWriter{w: w}
	n, err := io.CopyBuffer(hw, r, imp.buf)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fail(truncated(name, size, n))
		}
		return fail(fmt.Errorf("importing archive entry %q: %w", name, err))
	}
	got := w.Digest()
	if expected != "" && got != expected {
		return fail(fmt.Errorf("archive entry %q is corrupt: its name says digest %s but its data has digest %s: save or copy the archive again: %w",
			name, expected, got, errdefs.ErrInvalidArgument))
	}
	if err := w.Commit(ctx, size, got); err != nil && !errdefs.IsAlreadyExists(err) {
		return fail(fmt.Errorf("importing archive entry %q: %w", name, err))
	}
	delete(imp.open, ref)
	w.Close()
	imp.fromArchive[got] = true
	return &entry{desc: ocispec.Descriptor{Digest: got, Size: size}, head: hw.head}, nil
}

// ctxReader stops a long copy when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
