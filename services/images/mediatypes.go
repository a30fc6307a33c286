package images

import (
	"encoding/json"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of Docker's image manifest v2 schema 2, which `docker save`
// archives and Docker registries use beside the OCI ones.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// IsManifestType reports whether mt is the media type of an image
// manifest, OCI or Docker.
func IsManifestType(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}

// IsIndexType reports whether mt is the media type of an image index: an
// OCI index or a Docker manifest list.
func IsIndexType(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

// MediaType returns the media type of a manifest or index blob: the one its
// descriptor declares or, when that is empty (the OCI spec makes it optional
// in some places), the one the JSON states or implies by its fields. It is
// "" when neither says.
func MediaType(declared string, blob []byte) string {
	if declared != "" {
		return declared
	}
	var probe struct {
		MediaType string            `json:"mediaType"`
		Manifests []json.RawMessage `json:"manifests"`
		Config    json.RawMessage   `json:"config"`
	}
	if json.Unmarshal(blob, &probe) != nil {
		return ""
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case probe.Config != nil:
		return ocispec.MediaTypeImageManifest
	}
	return ""
}

// kindName names what a media type says a blob is, for messages.
func kindName(mt string) string {
	switch {
	case IsIndexType(mt):
		return "image index"
	case IsManifestType(mt):
		return "image manifest"
	}
	return "blob"
}
