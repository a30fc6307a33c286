// Package archive imports and exports image archives: OCI image layouts and
// `docker save` tarballs. Export writes one tar that is both at once, as
// Docker 25 does, so that Docker, Podman, skopeo and berth all accept it;
// Import reads either (or both) in a single streaming pass, so that its input
// may be a pipe.
package archive

import (
	"fmt"
	"strconv"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
)

// Media types of Docker's image manifest v2 schema 2.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	// mediaTypeInToto is the layer type of build attestations, which Docker
	// keeps in an image index beside the platform manifests.
	mediaTypeInToto = "application/vnd.in-toto+json"
)

// Annotations of index.json entries that name an image.
const (
	// AnnotationImageName holds the full name ("docker.io/library/busybox:latest").
	AnnotationImageName = "io.containerd.image.name"
	// AnnotationRefName holds the tag ("latest"); some tools put a whole
	// reference there.
	AnnotationRefName = ocispec.AnnotationRefName
)

// Garbage collection labels: the metadata store's collector follows them
// from a manifest to its config and layers, and from an index to its
// manifests.
const (
	LabelGCRefPrefix = "berth.gc.ref.content."
	LabelGCRefConfig = LabelGCRefPrefix + "config"
)

// LabelGCRefLayer is the label of a manifest that refers to its layer i.
func LabelGCRefLayer(i int) string { return LabelGCRefPrefix + "l." + strconv.Itoa(i) }

// LabelGCRefManifest is the label of an index that refers to its manifest i.
func LabelGCRefManifest(i int) string { return LabelGCRefPrefix + "m." + strconv.Itoa(i) }

const (
	// maxMetadataSize bounds what is read into memory: index.json,
	// manifest.json, manifests, indexes and configs.
	maxMetadataSize = 16 << 20
	// copyBufferSize is the buffer of every blob copy.
	copyBufferSize = 1 << 20
	// maxIndexDepth bounds nested indexes.
	maxIndexDepth = 8
	// maxLinkDepth bounds chains of links inside an archive.
	maxLinkDepth = 16
)

type blobKind int

const (
	kindUnknown blobKind = iota
	kindManifest
	kindIndex
)

func kindOf(mediaType string) blobKind {
	switch mediaType {
	case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest:
		return kindManifest
	case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList:
		return kindIndex
	}
	return kindUnknown
}

func unknownMediaType(what, mediaType string) error {
	return fmt.Errorf("%s has media type %q, which berth does not know: expected an OCI or Docker schema 2 manifest or index: %w",
		what, mediaType, errdefs.ErrInvalidArgument)
}

func knownConfigType(mediaType string) bool {
	switch mediaType {
	case ocispec.MediaTypeImageConfig, MediaTypeDockerConfig, ocispec.MediaTypeEmptyJSON:
		return true
	}
	return false
}

func knownLayerType(mediaType string) bool {
	switch mediaType {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
		// Non-distributable layers are deprecated by the spec but still
		// found in images.
		"application/vnd.oci.image.layer.nondistributable.v1.tar",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
		"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
		MediaTypeDockerLayer, MediaTypeDockerLayerGzip, MediaTypeDockerLayerForeign,
		mediaTypeInToto, ocispec.MediaTypeEmptyJSON:
		return true
	}
	return false
}

// blobDoc is the union of the fields of manifests and indexes that an
// import or export needs; decoding into it tells one from the other.
type blobDoc struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType,omitempty"`
	Config        *ocispec.Descriptor  `json:"config,omitempty"`
	Layers        []ocispec.Descriptor `json:"layers,omitempty"`
	Manifests     []ocispec.Descriptor `json:"manifests,omitempty"`
}

// mediaTypeOf returns the media type of a manifest or index: the
// descriptor's, or else the document's own, or else a guess from its fields.
func (d *blobDoc) mediaTypeOf(descType string) string {
	switch {
	case descType != "":
		return descType
	case d.MediaType != "":
		return d.MediaType
	case d.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case d.Config != nil:
		return ocispec.MediaTypeImageManifest
	}
	return ""
}
