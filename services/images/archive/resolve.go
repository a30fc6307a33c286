package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/reference"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
)

// resolve turns what the read pass found into images, once the whole
// archive is in the store.
func (imp *importer) resolve(ctx context.Context) ([]images.Image, error) {
	if err := imp.resolveLinks(); err != nil {
		return nil, err
	}
	index, manifest := imp.entries["index.json"], imp.entries["manifest.json"]
	for _, e := range []*entry{index, manifest} {
		if e != nil && e.data == nil {
			return nil, fmt.Errorf("not an image archive: index.json and manifest.json must be regular files: %w", errdefs.ErrInvalidArgument)
		}
	}
	if index == nil && manifest == nil {
		if imp.entries["repositories"] != nil {
			return nil, fmt.Errorf("archive is a docker save tarball of Docker before 1.10 (repositories without manifest.json), which berth cannot read: save it again with a newer Docker: %w", errdefs.ErrNotImplemented)
		}
		return nil, fmt.Errorf("not an image archive: expected a docker save tarball or an OCI layout (found neither manifest.json nor index.json): %w", errdefs.ErrInvalidArgument)
	}
	r := &resolver{imp: imp, labels: map[digest.Digest]map[string]string{}, list: newImageList()}
	byConfig := map[digest.Digest][]ocispec.Descriptor{}
	if index != nil {
		if err := r.oci(ctx, index.data, byConfig); err != nil {
			return nil, err
		}
	}
	if manifest != nil {
		if err := r.docker(ctx, manifest.data, byConfig); err != nil {
			return nil, err
		}
	}
	if err := r.applyLabels(ctx); err != nil {
		return nil, err
	}
	return r.list.images(), nil
}

// resolveLinks replaces every link by the file it points to.
func (imp *importer) resolveLinks() error {
	resolved := map[string]*entry{}
	for name, e := range imp.entries {
		target, hops := e, 0
		for target.link != "" {
			next, ok := imp.entries[target.link]
			if !ok {
				return fmt.Errorf("archive entry %q links to %q, which is not a file of the archive: %w", name, target.link, errdefs.ErrInvalidArgument)
			}
			if hops++; hops > maxLinkDepth {
				return fmt.Errorf("archive entry %q: more than %d links in a row, or a loop: %w", name, maxLinkDepth, errdefs.ErrInvalidArgument)
			}
			target = next
		}
		if target != e && metadataFiles[name] {
			return fmt.Errorf("archive entry %q is a link: image metadata must be a regular file: %w", name, errdefs.ErrInvalidArgument)
		}
		resolved[name] = target
	}
	imp.entries = resolved
	return nil
}

type resolver struct {
	imp *importer
	// labels are the garbage collection labels to set, by blob.
	labels map[digest.Digest]map[string]string
	list   *imageList
}

func (r *resolver) cs() content.Store { return r.imp.cs }

// oci imports the images of index.json. byConfig gets, for each config
// digest, the index.json entries whose image uses it, so that names from
// manifest.json can join them.
func (r *resolver) oci(ctx context.Context, data []byte, byConfig map[digest.Digest][]ocispec.Descriptor) error {
	if layout := r.imp.entries[ocispec.ImageLayoutFile]; layout != nil {
		var l ocispec.ImageLayout
		if err := json.Unmarshal(layout.data, &l); err != nil {
			return fmt.Errorf("archive's oci-layout is not valid JSON: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		if l.Version != ocispec.ImageLayoutVersion {
			return fmt.Errorf("archive is an OCI layout of version %q: berth reads version %s: %w", l.Version, ocispec.ImageLayoutVersion, errdefs.ErrNotImplemented)
		}
	}
	var idx blobDoc
	if err := json.Unmarshal(data, &idx); err != nil {
		return fmt.Errorf("archive's index.json is not valid JSON: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if idx.SchemaVersion != 2 {
		return fmt.Errorf("archive's index.json has schema version %d, expected 2: %w", idx.SchemaVersion, errdefs.ErrInvalidArgument)
	}
	for i, desc := range idx.Manifests {
		what := fmt.Sprintf("entry %d of index.json (%s)", i, desc.Digest)
		if desc.MediaType != "" && !isImageType(desc.MediaType) {
			return unknownMediaType(what, desc.MediaType)
		}
		var configs []digest.Digest
		mediaType, err := r.verify(ctx, desc, what, 0, &configs)
		if err != nil {
			return err
		}
		name, err := ociName(desc.Annotations)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		target := targetOf(desc, mediaType)
		r.list.add(target, name)
		for _, c := range configs {
			byConfig[c] = append(byConfig[c], target)
		}
	}
	return nil
}

// targetOf is the descriptor an image record keeps: the index.json entry
// without the annotations that only name it.
func targetOf(desc ocispec.Descriptor, mediaType string) ocispec.Descriptor {
	t := desc
	t.MediaType = mediaType
	t.Annotations = nil
	for k, v := range desc.Annotations {
		if k == AnnotationImageName || k == AnnotationRefName {
			continue
		}
		if t.Annotations == nil {
			t.Annotations = map[string]string{}
		}
		t.Annotations[k] = v
	}
	return t
}

// ociName returns the normalised image name that annotations give, or ""
// when they give none. A ref.name without ':', '/' or '@' is only a tag,
// which names no repository.
func ociName(ann map[string]string) (string, error) {
	n := ann[AnnotationImageName]
	if n == "" {
		if ref := ann[AnnotationRefName]; strings.ContainsAny(ref, ":/@") {
			n = ref
		}
	}
	if n == "" {
		return "", nil
	}
	return reference.Normalize(n)
}

// verify checks that the manifest or index desc and everything it refers to
// is in the store, records the garbage collection labels to set, appends the
// configs of its manifests to configs and returns its media type.
func (r *resolver) verify(ctx context.Context, desc ocispec.Descriptor, what string, depth int, configs *[]digest.Digest) (string, error) {
	if depth > images.MaxIndexDepth {
		return "", fmt.Errorf("%s: indexes nested more than %d deep: %w", what, images.MaxIndexDepth, errdefs.ErrInvalidArgument)
	}
	doc, err := r.readDoc(ctx, desc, what)
	if err != nil {
		return "", err
	}
	mediaType := images.MediaType(desc.MediaType, doc.raw)
	if doc.MediaType != "" && doc.MediaType != mediaType {
		return "", fmt.Errorf("%s: its descriptor says media type %q but the blob says %q: %w", what, mediaType, doc.MediaType, errdefs.ErrInvalidArgument)
	}
	if doc.SchemaVersion != 2 {
		return "", fmt.Errorf("%s: schema version %d, expected 2: %w", what, doc.SchemaVersion, errdefs.ErrInvalidArgument)
	}
	labels := map[string]string{}
	switch {
	case images.IsManifestType(mediaType):
		if doc.Config == nil {
			return "", fmt.Errorf("%s: manifest has no config: %w", what, errdefs.ErrInvalidArgument)
		}
		if !knownConfigType(doc.Config.MediaType) {
			return "", fmt.Errorf("config of manifest %s has media type %q, which berth does not know: %w", desc.Digest, doc.Config.MediaType, errdefs.ErrInvalidArgument)
		}
		if err := r.present(ctx, *doc.Config, fmt.Sprintf("config %s of manifest %s", doc.Config.Digest, desc.Digest)); err != nil {
			return "", err
		}
		labels[LabelGCRefConfig] = doc.Config.Digest.String()
		for i, l := range doc.Layers {
			if !knownLayerType(l.MediaType) {
				return "", fmt.Errorf("layer %d of manifest %s has media type %q, which berth does not know: %w", i, desc.Digest, l.MediaType, errdefs.ErrInvalidArgument)
			}
			if err := r.present(ctx, l, fmt.Sprintf("layer %d (%s) of manifest %s", i, l.Digest, desc.Digest)); err != nil {
				return "", err
			}
			labels[LabelGCRefLayer(i)] = l.Digest.String()
		}
		*configs = append(*configs, doc.Config.Digest)
	case images.IsIndexType(mediaType):
		found := 0
		for i, child := range doc.Manifests {
			childWhat := fmt.Sprintf("manifest %d (%s) of index %s", i, child.Digest, desc.Digest)
			if !isImageType(child.MediaType) {
				return "", unknownMediaType(childWhat, child.MediaType)
			}
			labels[LabelGCRefManifest(i)] = child.Digest.String()
			if _, err := r.verify(ctx, child, childWhat, depth+1, configs); err != nil {
				// An index may list platforms that the archive does not
				// hold (docker save of a partly pulled image does this);
				// but what the archive holds must be whole.
				if errdefs.IsNotFound(err) && !r.imp.fromArchive[child.Digest] {
					continue
				}
				return "", err
			}
			found++
		}
		if found == 0 {
			return "", fmt.Errorf("%s: none of the %d manifests of index %s is in the archive or the content store: %w", what, len(doc.Manifests), desc.Digest, errdefs.ErrNotFound)
		}
	default:
		return "", unknownMediaType(what, mediaType)
	}
	r.labels[desc.Digest] = labels
	return mediaType, nil
}

// present checks that the blob of desc is in the store with desc's size.
func (r *resolver) present(ctx context.Context, desc ocispec.Descriptor, what string) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("%s: invalid digest %q: %w", what, desc.Digest, errdefs.ErrInvalidArgument)
	}
	info, err := r.cs().Info(ctx, desc.Digest)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("%s is neither in the archive nor in the content store: %w", what, errdefs.ErrNotFound)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if info.Size != desc.Size {
		return fmt.Errorf("%s: the descriptor says %d bytes but the blob has %d: %w", what, desc.Size, info.Size, errdefs.ErrInvalidArgument)
	}
	return nil
}

// readDoc reads a manifest or index from the store.
func (r *resolver) readDoc(ctx context.Context, desc ocispec.Descriptor, what string) (*blobDoc, error) {
	data, err := r.readSmallBlob(ctx, desc, what)
	if err != nil {
		return nil, err
	}
	doc, err := decodeDoc(data)
	if err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %v: %w", what, err, errdefs.ErrInvalidArgument)
	}
	return doc, nil
}

// readSmallBlob reads a blob that must be present and small enough for
// memory.
func (r *resolver) readSmallBlob(ctx context.Context, desc ocispec.Descriptor, what string) ([]byte, error) {
	if err := r.present(ctx, desc, what); err != nil {
		return nil, err
	}
	data, err := images.ReadMetadata(ctx, r.cs(), desc)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return data, nil
}

// dockerManifestEntry is one image of a docker save manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// docker imports the images of manifest.json. An image that index.json
// describes already (same config) only gets the names it lacks.
func (r *resolver) docker(ctx context.Context, data []byte, byConfig map[digest.Digest][]ocispec.Descriptor) error {
	var entries []dockerManifestEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return fmt.Errorf("archive's manifest.json is not valid JSON: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	for i, me := range entries {
		what := fmt.Sprintf("entry %d of manifest.json", i)
		var names []string
		for _, tag := range me.RepoTags {
			n, err := reference.Normalize(tag)
			if err != nil {
				return fmt.Errorf("%s: RepoTags: %w", what, err)
			}
			names = append(names, n)
		}
		cfg, err := r.archiveBlob(me.Config, "config of "+what)
		if err != nil {
			return err
		}
		if targets := byConfig[cfg.desc.Digest]; len(targets) > 0 {
			for _, n := range names {
				if !r.list.has(n) {
					r.list.add(targets[0], n)
				}
			}
			continue
		}
		target, err := r.dockerManifest(ctx, me, cfg, what)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			r.list.add(target, "")
		}
		for _, n := range names {
			r.list.add(target, n)
		}
	}
	return nil
}

// archiveBlob returns the file that manifest.json names by its path.
func (r *resolver) archiveBlob(p, what string) (*entry, error) {
	name, err := cleanName(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	e := r.imp.entries[name]
	if name == "" || e == nil {
		return nil, fmt.Errorf("%s is %q, which is not in the archive: %w", what, p, errdefs.ErrNotFound)
	}
	if e.desc.Digest == "" {
		return nil, fmt.Errorf("%s is %q, which is archive metadata, not a blob: %w", what, p, errdefs.ErrInvalidArgument)
	}
	return e, nil
}

// schema2Manifest is a Docker image manifest v2 schema 2. Its field order,
// and so its digest, is fixed.
type schema2Manifest struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	Config        ocispec.Descriptor   `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// dockerManifest writes the schema 2 manifest of a manifest.json entry.
func (r *resolver) dockerManifest(ctx context.Context, me dockerManifestEntry, cfg *entry, what string) (ocispec.Descriptor, error) {
	cfgDesc := ocispec.Descriptor{MediaType: images.MediaTypeDockerConfig, Digest: cfg.desc.Digest, Size: cfg.desc.Size}
	cfgData, err := r.readSmallBlob(ctx, cfgDesc, fmt.Sprintf("config %q of %s", me.Config, what))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	var config ocispec.Image
	if err := json.Unmarshal(cfgData, &config); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("config %q of %s is not valid JSON: %v: %w", me.Config, what, err, errdefs.ErrInvalidArgument)
	}
	if len(config.RootFS.DiffIDs) != len(me.Layers) {
		return ocispec.Descriptor{}, fmt.Errorf("%s lists %d layers but its config %q has %d diff IDs: %w",
			what, len(me.Layers), me.Config, len(config.RootFS.DiffIDs), errdefs.ErrInvalidArgument)
	}
	m := schema2Manifest{SchemaVersion: 2, MediaType: images.MediaTypeDockerManifest, Config: cfgDesc, Layers: []ocispec.Descriptor{}}
	labels := map[string]string{LabelGCRefConfig: cfgDesc.Digest.String()}
	for i, p := range me.Layers {
		layerWhat := fmt.Sprintf("layer %d of %s", i, what)
		l, err := r.archiveBlob(p, layerWhat)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		mediaType := images.MediaTypeDockerLayer
		switch {
		case bytes.HasPrefix(l.head, gzipMagic):
			mediaType = images.MediaTypeDockerLayerGzip
		case bytes.HasPrefix(l.head, zstdMagic):
			return ocispec.Descriptor{}, fmt.Errorf("%s (%q) is zstd-compressed, which a Docker schema 2 manifest cannot describe: %w", layerWhat, p, errdefs.ErrNotImplemented)
		default:
			// An uncompressed layer is its own diff ID: check it here, as
			// nothing else would before the layer is unpacked.
			if l.desc.Digest != config.RootFS.DiffIDs[i] {
				return ocispec.Descriptor{}, fmt.Errorf("%s (%q) has digest %s but its config expects diff ID %s: %w",
					layerWhat, p, l.desc.Digest, config.RootFS.DiffIDs[i], errdefs.ErrInvalidArgument)
			}
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mediaType, Digest: l.desc.Digest, Size: l.desc.Size})
		labels[LabelGCRefLayer(i)] = l.desc.Digest.String()
	}
	data, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: images.MediaTypeDockerManifest, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := r.writeManifest(ctx, desc, data, labels); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

// writeManifest stores a manifest made by the import, labelled at commit.
func (r *resolver) writeManifest(ctx context.Context, desc ocispec.Descriptor, data []byte, labels map[string]string) error {
	cs := r.cs()
	ref := r.imp.refPrefix + "manifest-" + desc.Digest.Encoded()
	w, err := cs.Writer(ctx, content.WithRef(ref), content.WithDescriptor(desc))
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return r.setLabels(ctx, desc.Digest, labels)
		}
		return fmt.Errorf("writing manifest %s: %w", desc.Digest, err)
	}
	r.imp.open[ref] = true
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("writing manifest %s: %w", desc.Digest, err)
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest, content.WithLabels(labels)); err != nil {
		if errdefs.IsAlreadyExists(err) {
			delete(r.imp.open, ref)
			return r.setLabels(ctx, desc.Digest, labels)
		}
		return fmt.Errorf("writing manifest %s: %w", desc.Digest, err)
	}
	delete(r.imp.open, ref)
	return nil
}

// applyLabels labels the manifests and indexes read from the archive.
func (r *resolver) applyLabels(ctx context.Context) error {
	dgsts := make([]digest.Digest, 0, len(r.labels))
	for d := range r.labels {
		dgsts = append(dgsts, d)
	}
	sort.Slice(dgsts, func(i, j int) bool { return dgsts[i] < dgsts[j] })
	for _, d := range dgsts {
		if err := r.setLabels(ctx, d, r.labels[d]); err != nil {
			return err
		}
	}
	return nil
}

func (r *resolver) setLabels(ctx context.Context, dgst digest.Digest, labels map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	paths := make([]string, 0, len(labels))
	for k := range labels {
		paths = append(paths, "labels."+k)
	}
	sort.Strings(paths)
	if _, err := r.cs().Update(ctx, content.Info{Digest: dgst, Labels: labels}, paths...); err != nil {
		// A store that keeps no labels (the raw local store) has no
		// garbage collector to follow them either.
		if errdefs.IsNotImplemented(err) {
			return nil
		}
		return fmt.Errorf("labelling blob %s for garbage collection: %w", dgst, err)
	}
	return nil
}

// imageList collects name -> target in order of appearance. A name seen
// again moves to its new target, as docker load does; a target left with no
// name, or that never had one, is returned under its digest.
type imageList struct {
	// slots keep the order of appearance: a name, or (name "") a target
	// listed without one.
	slots   []imageSlot
	targets map[string]ocispec.Descriptor
	seen    []ocispec.Descriptor
	seenSet map[digest.Digest]bool
}

type imageSlot struct {
	name   string
	target ocispec.Descriptor
}

func newImageList() *imageList {
	return &imageList{targets: map[string]ocispec.Descriptor{}, seenSet: map[digest.Digest]bool{}}
}

func (l *imageList) has(name string) bool { _, ok := l.targets[name]; return ok }

func (l *imageList) add(target ocispec.Descriptor, name string) {
	if !l.seenSet[target.Digest] {
		l.seenSet[target.Digest] = true
		l.seen = append(l.seen, target)
	}
	if name == "" || !l.has(name) {
		l.slots = append(l.slots, imageSlot{name: name, target: target})
	}
	if name != "" {
		l.targets[name] = target
	}
}

// images returns the images in order of appearance; targets that lost
// their name to a later image come last.
func (l *imageList) images() []images.Image {
	named := map[digest.Digest]bool{}
	for _, t := range l.targets {
		named[t.Digest] = true
	}
	var out []images.Image
	emitted := map[digest.Digest]bool{}
	unnamed := func(t ocispec.Descriptor) {
		if !named[t.Digest] && !emitted[t.Digest] {
			emitted[t.Digest] = true
			out = append(out, images.Image{Name: t.Digest.String(), Target: t})
		}
	}
	for _, s := range l.slots {
		if s.name != "" {
			out = append(out, images.Image{Name: s.name, Target: l.targets[s.name]})
		} else {
			unnamed(s.target)
		}
	}
	for _, t := range l.seen {
		unnamed(t)
	}
	return out
}
