package images

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestIsManifestAndIndexType(t *testing.T) {
	for _, tc := range []struct {
		mt                string
		manifest, isIndex bool
	}{
		{ocispec.MediaTypeImageManifest, true, false},
		{MediaTypeDockerManifest, true, false},
		{ocispec.MediaTypeImageIndex, false, true},
		{MediaTypeDockerManifestList, false, true},
		{ocispec.MediaTypeImageConfig, false, false},
		{MediaTypeDockerConfig, false, false},
		{MediaTypeDockerLayerGzip, false, false},
		{"", false, false},
	} {
		if got := IsManifestType(tc.mt); got != tc.manifest {
			t.Errorf("IsManifestType(%q) = %v, want %v", tc.mt, got, tc.manifest)
		}
		if got := IsIndexType(tc.mt); got != tc.isIndex {
			t.Errorf("IsIndexType(%q) = %v, want %v", tc.mt, got, tc.isIndex)
		}
	}
}

func TestMediaType(t *testing.T) {
	for _, tc := range []struct {
		name     string
		declared string
		blob     string
		want     string
	}{
		{"declared wins over the blob", MediaTypeDockerManifest, `{"mediaType":"` + ocispec.MediaTypeImageIndex + `"}`, MediaTypeDockerManifest},
		{"declared needs no JSON", ocispec.MediaTypeImageIndex, `not json`, ocispec.MediaTypeImageIndex},
		{"the blob's own", "", `{"mediaType":"` + MediaTypeDockerManifestList + `","manifests":[]}`, MediaTypeDockerManifestList},
		{"manifests imply an index", "", `{"schemaVersion":2,"manifests":[]}`, ocispec.MediaTypeImageIndex},
		{"a config implies a manifest", "", `{"schemaVersion":2,"config":{},"layers":[]}`, ocispec.MediaTypeImageManifest},
		{"nothing to go by", "", `{"schemaVersion":2}`, ""},
		{"not JSON", "", `{"schemaVersion":`, ""},
		{"manifests of the wrong type", "", `{"manifests":"x"}`, ""},
	} {
		if got := MediaType(tc.declared, []byte(tc.blob)); got != tc.want {
			t.Errorf("%s: MediaType(%q, %s) = %q, want %q", tc.name, tc.declared, tc.blob, got, tc.want)
		}
	}
}
