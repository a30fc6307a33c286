package archive

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/reference"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
)

// ExportOpt changes how Export writes an archive.
type ExportOpt func(*exportOptions)

type exportOptions struct {
	platform ocispec.Platform
}

// WithPlatform chooses the manifest that manifest.json describes for an
// image whose target is an index; the default is the host's platform.
func WithPlatform(p ocispec.Platform) ExportOpt {
	return func(o *exportOptions) { o.platform = p }
}

// Export writes imgs as one tar that is both an OCI image layout (oci-layout,
// index.json, blobs/sha256/...) and a docker save tarball (manifest.json,
// repositories), as Docker 25 does. Every blob is written once, streamed from
// cs and verified on the way. The output depends only on the images and
// their blobs: entries are sorted, owned by root and dated 1970-01-01.
//
// An index whose platforms are only partly in the store (a pull of one
// platform) is written as it is, with the manifests that are complete; the
// absent ones are left out, which Import accepts. manifest.json describes the
// manifest of the WithPlatform platform.
func Export(ctx context.Context, cs content.Provider, w io.Writer, imgs []images.Image, opts ...ExportOpt) error {
	o := exportOptions{platform: platforms.DefaultSpec()}
	for _, opt := range opts {
		opt(&o)
	}
	e := &exporter{
		p:        cs,
		matcher:  platforms.Only(o.platform),
		platform: o.platform,
		blobs:    map[digest.Digest]ocispec.Descriptor{},
		docs:     map[digest.Digest]*blobDoc{},
		complete: map[digest.Digest]bool{},
	}
	plan, err := e.plan(ctx, imgs)
	if err != nil {
		return err
	}
	return e.write(ctx, w, plan)
}

type exporter struct {
	p        content.Provider
	matcher  platforms.MatchComparer
	platform ocispec.Platform
	// blobs to write, by digest.
	blobs map[digest.Digest]ocispec.Descriptor
	// docs are the manifests and indexes read, by digest.
	docs map[digest.Digest]*blobDoc
	// complete holds the manifests and indexes whose blobs are all present.
	complete map[digest.Digest]bool
}

// dockerEntry is one image of manifest.json.
type dockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

type exportPlan struct {
	index        ocispec.Index
	manifest     []dockerEntry
	repositories map[string]map[string]string
}

func blobPath(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

// plan reads every manifest and index and decides what to write.
func (e *exporter) plan(ctx context.Context, imgs []images.Image) (*exportPlan, error) {
	p := &exportPlan{
		index:        ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}},
		manifest:     []dockerEntry{},
		repositories: map[string]map[string]string{},
	}
	byManifest := map[digest.Digest]int{} // manifest.json entry of each chosen manifest
	named := map[digest.Digest]bool{}
	for _, img := range imgs {
		if !reference.IsDigest(img.Name) {
			named[img.Target.Digest] = true
		}
	}
	seen := map[string]bool{}
	for _, img := range imgs {
		if seen[img.Name] {
			continue
		}
		seen[img.Name] = true
		isNamed := !reference.IsDigest(img.Name)
		if !isNamed && named[img.Target.Digest] {
			continue // exported under a name already
		}
		what := fmt.Sprintf("image %q", img.Name)
		if !isNamed {
			what = fmt.Sprintf("image %s", img.Name)
		}
		ok, err := e.collect(ctx, img.Target, what, 0)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%s is not complete in the content store: pull or load it again: %w", what, errdefs.ErrNotFound)
		}

		desc := img.Target
		desc.Annotations = nil
		for k, v := range img.Target.Annotations {
			if k != AnnotationImageName && k != AnnotationRefName {
				if desc.Annotations == nil {
					desc.Annotations = map[string]string{}
				}
				desc.Annotations[k] = v
			}
		}
		repo, tag := "", "<none>"
		if isNamed {
			repo, tag = reference.RepoTag(img.Name)
			if desc.Annotations == nil {
				desc.Annotations = map[string]string{}
			}
			desc.Annotations[AnnotationImageName] = img.Name
			if tag != "<none>" {
				desc.Annotations[AnnotationRefName] = tag
			}
		}
		p.index.Manifests = append(p.index.Manifests, desc)

		mdesc, err := e.pick(ctx, img.Target, what)
		if err != nil {
			return nil, err
		}
		doc := e.docs[mdesc.Digest]
		i, ok := byManifest[mdesc.Digest]
		if !ok {
			de := dockerEntry{Config: blobPath(doc.Config.Digest), Layers: []string{}}
			for _, l := range doc.Layers {
				de.Layers = append(de.Layers, blobPath(l.Digest))
			}
			i = len(p.manifest)
			byManifest[mdesc.Digest] = i
			p.manifest = append(p.manifest, de)
		}
		if tag != "<none>" {
			p.manifest[i].RepoTags = append(p.manifest[i].RepoTags, reference.Familiar(img.Name))
			if n := len(doc.Layers); n > 0 {
				if p.repositories[repo] == nil {
					p.repositories[repo] = map[string]string{}
				}
				// Docker names the top layer's directory here; berth
				// writes no layer directories, so it names the top layer
				// blob.
				p.repositories[repo][tag] = doc.Layers[n-1].Digest.Encoded()
			}
		}
	}
	return p, nil
}

// collect reads the manifest or index desc, notes the blobs it needs and
// reports whether they are all present. A missing top-level target is an
// error; a missing child of an index is left out.
func (e *exporter) collect(ctx context.Context, desc ocispec.Descriptor, what string, depth int) (bool, error) {
	if done, ok := e.complete[desc.Digest]; ok {
		return done, nil
	}
	if depth > images.MaxIndexDepth {
		return false, fmt.Errorf("%s: indexes nested more than %d deep: %w", what, images.MaxIndexDepth, errdefs.ErrInvalidArgument)
	}
	doc, err := e.readDoc(ctx, desc, what)
	if err != nil {
		if errdefs.IsNotFound(err) && depth > 0 {
			e.complete[desc.Digest] = false
			return false, nil
		}
		return false, err
	}
	ok := false
	switch mediaType := images.MediaType(desc.MediaType, doc.raw); {
	case images.IsManifestType(mediaType):
		if doc.Config == nil {
			return false, fmt.Errorf("%s: manifest %s has no config: %w", what, desc.Digest, errdefs.ErrInvalidArgument)
		}
		ok = true
		for _, d := range append([]ocispec.Descriptor{*doc.Config}, doc.Layers...) {
			present, err := e.present(ctx, d)
			if err != nil {
				return false, fmt.Errorf("%s: %w", what, err)
			}
			if !present {
				if depth == 0 {
					return false, fmt.Errorf("%s: blob %s of manifest %s is not in the content store: pull or load the image again: %w", what, d.Digest, desc.Digest, errdefs.ErrNotFound)
				}
				ok = false
				break
			}
		}
		if ok {
			e.blobs[doc.Config.Digest] = *doc.Config
			for _, l := range doc.Layers {
				e.blobs[l.Digest] = l
			}
		}
	case images.IsIndexType(mediaType):
		for i, child := range doc.Manifests {
			childOK, err := e.collect(ctx, child, fmt.Sprintf("%s: manifest %d of index %s", what, i, desc.Digest), depth+1)
			if err != nil {
				return false, err
			}
			ok = ok || childOK
		}
		if !ok && depth == 0 {
			return false, fmt.Errorf("%s: none of the %d manifests of index %s is complete in the content store: %w", what, len(doc.Manifests), desc.Digest, errdefs.ErrNotFound)
		}
	default:
		return false, unknownMediaType(what, mediaType)
	}
	if ok {
		e.blobs[desc.Digest] = desc
	}
	e.complete[desc.Digest] = ok
	return ok, nil
}

// present reports whether the blob of d is in the store with d's size.
func (e *exporter) present(ctx context.Context, d ocispec.Descriptor) (bool, error) {
	ra, err := e.p.ReaderAt(ctx, d)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	size := ra.Size()
	ra.Close()
	if size != d.Size {
		return false, fmt.Errorf("blob %s has %d bytes but its descriptor says %d: %w", d.Digest, size, d.Size, errdefs.ErrFailedPrecondition)
	}
	return true, nil
}

func (e *exporter) readDoc(ctx context.Context, desc ocispec.Descriptor, what string) (*blobDoc, error) {
	if doc, ok := e.docs[desc.Digest]; ok {
		return doc, nil
	}
	data, err := images.ReadMetadata(ctx, e.p, desc)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("%s: manifest %s is not in the content store: pull or load the image again: %w", what, desc.Digest, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("%s: reading manifest %s: %w", what, desc.Digest, err)
	}
	doc, err := decodeDoc(data)
	if err != nil {
		return nil, fmt.Errorf("%s: manifest %s is not valid JSON: %v: %w", what, desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	e.docs[desc.Digest] = doc
	return doc, nil
}

// pick returns the manifest that manifest.json describes for target: the
// target itself, or the best complete manifest for the platform.
func (e *exporter) pick(ctx context.Context, target ocispec.Descriptor, what string) (ocispec.Descriptor, error) {
	complete := func(d ocispec.Descriptor) bool { return e.complete[d.Digest] }
	desc, _, err := images.Manifest(ctx, e.p, target, e.matcher, images.WithFilter(complete))
	if errors.Is(err, images.ErrNoPlatform) {
		return ocispec.Descriptor{}, fmt.Errorf("%s has no manifest for platform %s in the content store: save it for another platform: %w",
			what, platforms.Format(e.platform), errdefs.ErrNotFound)
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", what, err)
	}
	return desc, nil
}

// write writes the tar: sorted names, so blobs first.
func (e *exporter) write(ctx context.Context, w io.Writer, p *exportPlan) error {
	tw := tar.NewWriter(w)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(header(dir, tar.TypeDir, 0)); err != nil {
			return fmt.Errorf("writing archive: %w", err)
		}
	}
	dgsts := make([]digest.Digest, 0, len(e.blobs))
	for d := range e.blobs {
		dgsts = append(dgsts, d)
	}
	sort.Slice(dgsts, func(i, j int) bool { return dgsts[i] < dgsts[j] })
	buf := make([]byte, copyBufferSize)
	for _, d := range dgsts {
		if err := e.writeBlob(ctx, tw, e.blobs[d], buf); err != nil {
			return err
		}
	}
	files := []struct {
		name string
		v    any
	}{
		{"index.json", p.index},
		{"manifest.json", p.manifest},
		{ocispec.ImageLayoutFile, ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}},
	}
	if len(p.repositories) > 0 {
		files = append(files, struct {
			name string
			v    any
		}{"repositories", p.repositories})
	}
	for _, f := range files {
		data, err := json.Marshal(f.v)
		if err != nil {
			return fmt.Errorf("writing %s: %w", f.name, err)
		}
		if err := tw.WriteHeader(header(f.name, tar.TypeReg, int64(len(data)))); err != nil {
			return fmt.Errorf("writing archive: %w", err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("writing archive: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	return nil
}

func header(name string, typ byte, size int64) *tar.Header {
	mode := int64(0o644)
	if typ == tar.TypeDir {
		mode = 0o755
	}
	return &tar.Header{Typeflag: typ, Name: name, Size: size, Mode: mode, ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR}
}

// writeBlob streams one blob into the tar, checking its digest on the way.
func (e *exporter) writeBlob(ctx context.Context, tw *tar.Writer, desc ocispec.Descriptor, buf []byte) error {
	ra, err := e.p.ReaderAt(ctx, desc)
	if err != nil {
		return fmt.Errorf("exporting blob %s: %w", desc.Digest, err)
	}
	defer ra.Close()
	if ra.Size() != desc.Size {
		return fmt.Errorf("exporting blob %s: it has %d bytes, its descriptor says %d: %w", desc.Digest, ra.Size(), desc.Size, errdefs.ErrFailedPrecondition)
	}
	if err := tw.WriteHeader(header(blobPath(desc.Digest), tar.TypeReg, desc.Size)); err != nil {
		return fmt.Errorf("writing archive: %w", err)
	}
	verifier := desc.Digest.Verifier()
	r := &ctxReader{ctx: ctx, r: io.NewSectionReader(ra, 0, desc.Size)}
	n, err := io.CopyBuffer(io.MultiWriter(tw, verifier), r, buf)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		return fmt.Errorf("exporting blob %s: %w", desc.Digest, err)
	}
	if n != desc.Size || !verifier.Verified() {
		return fmt.Errorf("exporting blob %s: the content store's data does not match its digest: %w", desc.Digest, errdefs.ErrFailedPrecondition)
	}
	return nil
}
