// Package archive imports and exports image archives: OCI image layouts and
// `docker save` tarballs. Export writes one tar that is both at once, as
// Docker 25 does, so that Docker, Podman, skopeo and berth all accept it;
// Import reads either (or both) in a single streaming pass, so that its input
// may be a pipe.
package archive

import (
	"encoding/json"
	"fmt"
	"strconv"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/images"
)

// mediaTypeInToto is the layer type of build attestations, which Docker
// keeps in an image index beside the platform manifests.
const mediaTypeInToto = "application/vnd.in-toto+json"

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
	// copyBufferSize is the buffer of every blob copy.
	copyBufferSize = 1 << 20
	// maxLinkDepth bounds chains of links inside an archive.
	maxLinkDepth = 16
)

// isImageType reports whether mt is the media type of a manifest or an
// index, the blobs an image record or an index may point at.
func isImageType(mt string) bool { return images.IsManifestType(mt) || images.IsIndexType(mt) }

func unknownMediaType(what, mediaType string) error {
	return fmt.Errorf("%s has media type %q, which berth does not know: expected an OCI or Docker schema 2 manifest or index: %w",
		what, mediaType, errdefs.ErrInvalidArgument)
}

func knownConfigType(mediaType string) bool {
	switch mediaType {
	case ocispec.MediaTypeImageConfig, images.MediaTypeDockerConfig, ocispec.MediaTypeEmptyJSON:
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
		images.MediaTypeDockerLayer, images.MediaTypeDockerLayerGzip, images.MediaTypeDockerLayerForeign,
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

	// raw is the blob, for images.MediaType.
	raw []byte
}

// decodeDoc decodes a manifest or index.
func decodeDoc(data []byte) (*blobDoc, error) {
	doc := &blobDoc{raw: data}
	if err := json.Unmarshal(data, doc); err != nil {
		return nil, err
	}
	return doc, nil
}
