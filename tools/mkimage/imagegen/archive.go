package imagegen

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"sort"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/reference"
)

// Format is the layout of an image archive.
type Format string

const (
	// FormatDocker is a `docker save` tarball as Docker wrote it before
	// version 25: uncompressed layers in <id>/layer.tar, <config>.json,
	// manifest.json and repositories.
	FormatDocker Format = "docker"
	// FormatOCI is an OCI image layout in a tar, with gzip-compressed layers
	// and the image names in index.json annotations.
	FormatOCI Format = "oci"
)

// Annotation keys of index.json entries.
const (
	AnnotationImageName = "io.containerd.image.name"
	AnnotationRefName   = ocispec.AnnotationRefName
)

// Named is an image and the names it gets in the archive.
type Named struct {
	Image *Image
	// Names are image references ("busybox", "my/app:v1"); none leaves the
	// image unnamed.
	Names []string
}

// archiveEntry is a file of the archive tar.
type archiveEntry struct {
	name  string
	dir   bool
	size  int64
	write func(io.Writer) error
}

func bytesEntry(name string, data []byte) archiveEntry {
	return archiveEntry{name: name, size: int64(len(data)), write: func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}}
}

// WriteArchive writes the images into one archive of the given format.
// Layers and configs shared by several images are written once.
func WriteArchive(w io.Writer, format Format, imgs ...Named) error {
	b := &builder{measured: map[*Layer]*layerBlob{}, files: map[string]archiveEntry{}, compressed: format == FormatOCI}
	var err error
	switch format {
	case FormatDocker:
		err = b.docker(imgs)
	case FormatOCI:
		err = b.oci(imgs)
	default:
		return fmt.Errorf("unknown archive format %q: use %q or %q", format, FormatDocker, FormatOCI)
	}
	if err != nil {
		return err
	}
	return b.writeTar(w)
}

type builder struct {
	compressed bool
	measured   map[*Layer]*layerBlob
	files      map[string]archiveEntry
}

func (b *builder) add(e archiveEntry) { b.files[e.name] = e }

func (b *builder) layers(img *Image) ([]*layerBlob, error) {
	var out []*layerBlob
	for i, l := range img.Layers {
		lb, ok := b.measured[l]
		if !ok {
			var err error
			if lb, err = measure(l, b.compressed); err != nil {
				return nil, fmt.Errorf("layer %d: %w", i, err)
			}
			b.measured[l] = lb
		}
		out = append(out, lb)
	}
	return out, nil
}

// config returns the image config JSON for the given layers.
func config(img *Image, layers []*layerBlob) []byte {
	created := Epoch()
	cfg := ocispec.Image{
		Created:  &created,
		Platform: img.Platform,
		Config:   img.Config,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}},
	}
	for _, lb := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, lb.diffID)
		cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: lb.layer.CreatedBy})
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // plain structs always marshal
	}
	return data
}

// normalizedNames returns the full names and the familiar name:tag forms.
func normalizedNames(names []string) (full, familiar []string, err error) {
	for _, n := range names {
		f, err := reference.Normalize(n)
		if err != nil {
			return nil, nil, err
		}
		full = append(full, f)
		familiar = append(familiar, reference.Familiar(f))
	}
	return full, familiar, nil
}

func (b *builder) docker(imgs []Named) error {
	type manifestEntry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var manifest []manifestEntry
	repositories := map[string]map[string]string{}
	for _, n := range imgs {
		layers, err := b.layers(n.Image)
		if err != nil {
			return err
		}
		cfg := config(n.Image, layers)
		cfgName := digest.FromBytes(cfg).Encoded() + ".json"
		b.add(bytesEntry(cfgName, cfg))
		entry := manifestEntry{Config: cfgName}
		// Pre-25 Docker names layer directories by a chain ID: the same
		// layer on another parent gets another directory.
		parent := ""
		for _, lb := range layers {
			id := digest.FromString(parent + " " + lb.diffID.String()).Encoded()
			v1 := map[string]string{"id": id, "created": Epoch().Format("2006-01-02T15:04:05Z")}
			if parent != "" {
				v1["parent"] = parent
			}
			v1JSON, _ := json.Marshal(v1)
			b.add(archiveEntry{name: id + "/", dir: true})
			b.add(bytesEntry(id+"/VERSION", []byte("1.0")))
			b.add(bytesEntry(id+"/json", v1JSON))
			l := lb.layer
			b.add(archiveEntry{name: id + "/layer.tar", size: lb.size, write: l.WriteTar})
			entry.Layers = append(entry.Layers, id+"/layer.tar")
			parent = id
		}
		full, familiar, err := normalizedNames(n.Names)
		if err != nil {
			return err
		}
		entry.RepoTags = familiar
		for _, f := range full {
			repo, tag := reference.RepoTag(f)
			if tag == "<none>" || parent == "" {
				continue
			}
			if repositories[repo] == nil {
				repositories[repo] = map[string]string{}
			}
			repositories[repo][tag] = parent
		}
		manifest = append(manifest, entry)
	}
	data, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	b.add(bytesEntry("manifest.json", data))
	if len(repositories) > 0 {
		data, err := json.Marshal(repositories)
		if err != nil {
			return err
		}
		b.add(bytesEntry("repositories", data))
	}
	return nil
}

func (b *builder) addBlob(data []byte) ocispec.Descriptor {
	d := digest.FromBytes(data)
	b.add(bytesEntry("blobs/sha256/"+d.Encoded(), data))
	return ocispec.Descriptor{Digest: d, Size: int64(len(data))}
}

func (b *builder) oci(imgs []Named) error {
	b.add(archiveEntry{name: "blobs/", dir: true})
	b.add(archiveEntry{name: "blobs/sha256/", dir: true})
	index := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	for _, n := range imgs {
		layers, err := b.layers(n.Image)
		if err != nil {
			return err
		}
		cfgDesc := b.addBlob(config(n.Image, layers))
		cfgDesc.MediaType = ocispec.MediaTypeImageConfig
		m := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    cfgDesc,
			Layers:    []ocispec.Descriptor{},
		}
		for _, lb := range layers {
			l := lb.layer
			b.add(archiveEntry{name: "blobs/sha256/" + lb.gzDigest.Encoded(), size: lb.gzSize, write: l.writeGzip})
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: lb.gzDigest, Size: lb.gzSize})
		}
		data, err := json.Marshal(m)
		if err != nil {
			return err
		}
		mDesc := b.addBlob(data)
		mDesc.MediaType = ocispec.MediaTypeImageManifest
		full, _, err := normalizedNames(n.Names)
		if err != nil {
			return err
		}
		if len(full) == 0 {
			index.Manifests = append(index.Manifests, mDesc)
		}
		for _, f := range full {
			d := mDesc
			d.Annotations = map[string]string{AnnotationImageName: f}
			if _, tag := reference.RepoTag(f); tag != "<none>" {
				d.Annotations[AnnotationRefName] = tag
			}
			index.Manifests = append(index.Manifests, d)
		}
	}
	data, err := json.Marshal(index)
	if err != nil {
		return err
	}
	b.add(bytesEntry("index.json", data))
	b.add(bytesEntry(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"`+ocispec.ImageLayoutVersion+`"}`)))
	return nil
}

// writeTar writes the collected files sorted by name, owned by root and
// stamped with Epoch.
func (b *builder) writeTar(w io.Writer) error {
	names := make([]string, 0, len(b.files))
	for n := range b.files {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, n := range names {
		e := b.files[n]
		hdr := &tar.Header{Name: e.name, Mode: 0o644, Size: e.size, ModTime: Epoch(), Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if e.dir {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing archive entry %s: %w", e.name, err)
		}
		if e.write == nil {
			continue
		}
		cw := &countWriter{w: tw}
		if err := e.write(cw); err != nil {
			return fmt.Errorf("writing archive entry %s: %w", e.name, err)
		}
		if cw.n != e.size {
			return fmt.Errorf("archive entry %s: wrote %d bytes, measured %d: its content is not deterministic", e.name, cw.n, e.size)
		}
	}
	return tw.Close()
}

// Digests returns the config digest and the layer digests (as stored in
// the archive) that WriteArchive gives img in format; tests use it to
// know what an import must produce.
func Digests(img *Image, format Format) (cfg digest.Digest, layers []digest.Digest, err error) {
	b := &builder{measured: map[*Layer]*layerBlob{}, compressed: format == FormatOCI}
	lbs, err := b.layers(img)
	if err != nil {
		return "", nil, err
	}
	for _, lb := range lbs {
		if b.compressed {
			layers = append(layers, lb.gzDigest)
		} else {
			layers = append(layers, lb.diffID)
		}
	}
	return digest.FromBytes(config(img, lbs)), layers, nil
}
