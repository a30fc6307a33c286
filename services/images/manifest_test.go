package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
)

var (
	amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64"}
	s390x = ocispec.Platform{OS: "linux", Architecture: "s390x"}
)

// blobs is an in-memory content.Provider that counts what it opens.
type blobs struct {
	data   map[digest.Digest][]byte
	opened int
}

func newBlobs() *blobs { return &blobs{data: map[digest.Digest][]byte{}} }

type readerAt struct{ *bytes.Reader }

func (readerAt) Close() error { return nil }

func (b *blobs) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	b.opened++
	data, ok := b.data[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return readerAt{bytes.NewReader(data)}, nil
}

func (b *blobs) add(mediaType string, data []byte) ocispec.Descriptor {
	d := digest.FromBytes(data)
	b.data[d] = data
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
}

func (b *blobs) addJSON(mediaType string, v any) ocispec.Descriptor {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b.add(mediaType, data)
}

// image stores a config for p (and a name, so that every image differs)
// and a manifest of it, whose descriptor states no platform.
func (b *blobs) image(name string, p ocispec.Platform) ocispec.Descriptor {
	cfg := ocispec.Image{Platform: p, Author: name}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: b.addJSON(ocispec.MediaTypeImageConfig, cfg), Layers: []ocispec.Descriptor{}}
	return b.addJSON(ocispec.MediaTypeImageManifest, m)
}

func (b *blobs) index(mediaType string, manifests ...ocispec.Descriptor) ocispec.Descriptor {
	return b.addJSON(mediaType, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mediaType, Manifests: manifests})
}

func withPlatform(d ocispec.Descriptor, p ocispec.Platform) ocispec.Descriptor {
	d.Platform = &p
	return d
}

func TestReadMetadata(t *testing.T) {
	ctx := context.Background()
	b := newBlobs()
	good := b.add(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64"}`))
	if data, err := ReadMetadata(ctx, b, good); err != nil || string(data) != `{"architecture":"amd64"}` {
		t.Fatalf("ReadMetadata = %q, %v", data, err)
	}

	t.Run("larger than the limit", func(t *testing.T) {
		big := ocispec.Descriptor{Digest: digest.FromString("big"), Size: MaxMetadataSize + 1}
		b.opened = 0
		_, err := ReadMetadata(ctx, b, big)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "more than the 16777216 allowed") {
			t.Errorf("oversized blob: %v", err)
		}
		if b.opened != 0 {
			t.Errorf("an oversized blob was opened")
		}
	})
	t.Run("store holds more than the descriptor says", func(t *testing.T) {
		short := good
		short.Size--
		if _, err := ReadMetadata(ctx, b, short); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("size mismatch: %v", err)
		}
	})
	t.Run("bytes do not match the digest", func(t *testing.T) {
		other := digest.FromString("other")
		b.data[other] = b.data[good.Digest]
		if _, err := ReadMetadata(ctx, b, ocispec.Descriptor{Digest: other, Size: good.Size}); !errdefs.IsFailedPrecondition(err) ||
			!strings.Contains(err.Error(), other.String()) {
			t.Errorf("digest mismatch: %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := ReadMetadata(ctx, b, ocispec.Descriptor{Digest: digest.FromString("gone"), Size: 4}); !errdefs.IsNotFound(err) {
			t.Errorf("missing blob: %v", err)
		}
	})
	t.Run("invalid digest", func(t *testing.T) {
		if _, err := ReadMetadata(ctx, b, ocispec.Descriptor{Digest: "md5:abc", Size: 4}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("invalid digest: %v", err)
		}
	})
}

func TestReadConfig(t *testing.T) {
	ctx := context.Background()
	b := newBlobs()
	cfg, err := ReadConfig(ctx, b, b.addJSON(ocispec.MediaTypeImageConfig, ocispec.Image{Platform: arm64}))
	if err != nil || cfg.Architecture != "arm64" {
		t.Fatalf("ReadConfig = %+v, %v", cfg, err)
	}
	bad := b.add(ocispec.MediaTypeImageConfig, []byte(`{"architecture":`))
	if _, err := ReadConfig(ctx, b, bad); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "decoding image config "+bad.Digest.String()) {
		t.Errorf("bad config: %v", err)
	}
	gone := ocispec.Descriptor{Digest: digest.FromString("gone"), Size: 2}
	if _, err := ReadConfig(ctx, b, gone); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "reading image config "+gone.Digest.String()) {
		t.Errorf("missing config: %v", err)
	}
}

// manifestFor runs Manifest and returns the digest of the manifest chosen.
func manifestFor(t *testing.T, b *blobs, target ocispec.Descriptor, p platforms.MatchComparer, opts ...ManifestOpt) (digest.Digest, error) {
	t.Helper()
	desc, m, err := Manifest(context.Background(), b, target, p, opts...)
	if err != nil {
		return "", err
	}
	if want, _ := json.Marshal(m); digest.FromBytes(want) != desc.Digest {
		t.Errorf("the manifest returned is not the one of descriptor %s", desc.Digest)
	}
	return desc.Digest, nil
}

func TestManifestOfAManifestIgnoresPlatform(t *testing.T) {
	b := newBlobs()
	arm := b.image("arm", arm64)
	if got, err := manifestFor(t, b, arm, platforms.Only(amd64)); err != nil || got != arm.Digest {
		t.Errorf("manifest target: %s, %v; want itself", got, err)
	}
	// A manifest that declares no media type is told by its fields.
	arm.MediaType = ""
	if got, err := manifestFor(t, b, arm, platforms.Only(amd64)); err != nil || got != arm.Digest {
		t.Errorf("manifest target without a media type: %s, %v", got, err)
	}
}

func TestManifestPicksPlatform(t *testing.T) {
	b := newBlobs()
	amd, arm := b.image("amd", amd64), b.image("arm", arm64)
	for _, mt := range []string{ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList} {
		idx := b.index(mt, withPlatform(arm, arm64), withPlatform(amd, amd64))
		for _, tc := range []struct {
			p    ocispec.Platform
			want digest.Digest
		}{{amd64, amd.Digest}, {arm64, arm.Digest}} {
			if got, err := manifestFor(t, b, idx, platforms.Only(tc.p)); err != nil || got != tc.want {
				t.Errorf("%s for %s: %s, %v; want %s", mt, platforms.Format(tc.p), got, err, tc.want)
			}
		}
		_, err := manifestFor(t, b, idx, platforms.Only(s390x))
		if !errors.Is(err, ErrNoPlatform) || !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), idx.Digest.String()) {
			t.Errorf("%s for s390x: %v, want ErrNoPlatform naming the index", mt, err)
		}
	}
}

func TestManifestPrefersTheBetterPlatform(t *testing.T) {
	b := newBlobs()
	amd, i386 := b.image("amd", amd64), b.image("386", ocispec.Platform{OS: "linux", Architecture: "386"})
	idx := b.index(ocispec.MediaTypeImageIndex, withPlatform(i386, ocispec.Platform{OS: "linux", Architecture: "386"}), withPlatform(amd, amd64))
	p := platforms.Ordered(amd64, ocispec.Platform{OS: "linux", Architecture: "386"})
	if got, err := manifestFor(t, b, idx, p); err != nil || got != amd.Digest {
		t.Errorf("ordered amd64, 386: %s, %v; want amd64's %s", got, err, amd.Digest)
	}
	// Of two equally good, the first listed.
	amd2 := b.image("amd2", amd64)
	idx = b.index(ocispec.MediaTypeImageIndex, withPlatform(amd2, amd64), withPlatform(amd, amd64))
	if got, err := manifestFor(t, b, idx, platforms.Only(amd64)); err != nil || got != amd2.Digest {
		t.Errorf("two amd64 manifests: %s, %v; want the first, %s", got, err, amd2.Digest)
	}
}

func TestManifestWithoutPlatformMatchesWhenNothingIsBetter(t *testing.T) {
	b := newBlobs()
	amd, noPlatformAMD, noPlatformARM := b.image("amd", amd64), b.image("amd, unstated", amd64), b.image("arm, unstated", arm64)

	idx := b.index(ocispec.MediaTypeImageIndex, noPlatformAMD, withPlatform(amd, amd64))
	if got, err := manifestFor(t, b, idx, platforms.Only(amd64)); err != nil || got != amd.Digest {
		t.Errorf("stated and unstated amd64: %s, %v; want the stated one %s", got, err, amd.Digest)
	}
	idx = b.index(ocispec.MediaTypeImageIndex, noPlatformARM, noPlatformAMD)
	if got, err := manifestFor(t, b, idx, platforms.Only(amd64)); err != nil || got != noPlatformAMD.Digest {
		t.Errorf("only unstated ones: %s, %v; want the one whose config is amd64, %s", got, err, noPlatformAMD.Digest)
	}
	if _, err := manifestFor(t, b, idx, platforms.Only(s390x)); !errors.Is(err, ErrNoPlatform) {
		t.Errorf("unstated ones for s390x: %v, want ErrNoPlatform", err)
	}
}

func TestManifestSearchesNestedIndexes(t *testing.T) {
	b := newBlobs()
	amd, arm := b.image("amd", amd64), b.image("arm", arm64)
	armOnly := b.index(MediaTypeDockerManifestList, withPlatform(arm, arm64))
	amdOnly := b.index(ocispec.MediaTypeImageIndex, withPlatform(amd, amd64))
	amdOnly.MediaType = "" // told by its fields
	outer := b.index(ocispec.MediaTypeImageIndex, armOnly, amdOnly)
	if got, err := manifestFor(t, b, outer, platforms.Only(amd64)); err != nil || got != amd.Digest {
		t.Errorf("amd64 in the second nested index: %s, %v; want %s", got, err, amd.Digest)
	}
	if got, err := manifestFor(t, b, outer, platforms.Only(arm64)); err != nil || got != arm.Digest {
		t.Errorf("arm64 in the first nested index: %s, %v; want %s", got, err, arm.Digest)
	}
	if _, err := manifestFor(t, b, outer, platforms.Only(s390x)); !errors.Is(err, ErrNoPlatform) || !strings.Contains(err.Error(), outer.Digest.String()) {
		t.Errorf("s390x: %v, want ErrNoPlatform naming the outer index", err)
	}
}

func TestManifestFallbackToFirst(t *testing.T) {
	b := newBlobs()
	amd, arm := b.image("amd", amd64), b.image("arm", arm64)
	idx := b.index(ocispec.MediaTypeImageIndex, withPlatform(arm, arm64), withPlatform(amd, amd64))
	if got, err := manifestFor(t, b, idx, platforms.Only(s390x), WithFallbackToFirst()); err != nil || got != arm.Digest {
		t.Errorf("no s390x, with fallback: %s, %v; want the first, %s", got, err, arm.Digest)
	}
	if got, err := manifestFor(t, b, idx, platforms.Only(amd64), WithFallbackToFirst()); err != nil || got != amd.Digest {
		t.Errorf("amd64 with fallback: %s, %v; want the match %s", got, err, amd.Digest)
	}
	empty := b.index(ocispec.MediaTypeImageIndex)
	if _, err := manifestFor(t, b, empty, platforms.Only(amd64), WithFallbackToFirst()); !errors.Is(err, ErrNoPlatform) || !strings.Contains(err.Error(), "lists no manifests") {
		t.Errorf("empty index with fallback: %v", err)
	}
}

func TestManifestWithFilter(t *testing.T) {
	b := newBlobs()
	amd, amd2 := b.image("amd", amd64), b.image("amd2", amd64)
	idx := b.index(ocispec.MediaTypeImageIndex, withPlatform(amd, amd64), withPlatform(amd2, amd64))
	notAMD := WithFilter(func(d ocispec.Descriptor) bool { return d.Digest != amd.Digest })
	if got, err := manifestFor(t, b, idx, platforms.Only(amd64), notAMD); err != nil || got != amd2.Digest {
		t.Errorf("first filtered out: %s, %v; want %s", got, err, amd2.Digest)
	}
	none := WithFilter(func(ocispec.Descriptor) bool { return false })
	if _, err := manifestFor(t, b, idx, platforms.Only(amd64), none, WithFallbackToFirst()); !errors.Is(err, ErrNoPlatform) {
		t.Errorf("all filtered out: %v, want ErrNoPlatform even with the fallback", err)
	}
	// The filter is for the manifests of indexes, not for the target.
	if got, err := manifestFor(t, b, amd, platforms.Only(amd64), none); err != nil || got != amd.Digest {
		t.Errorf("filtered target: %s, %v", got, err)
	}
}

func TestManifestNestingLimit(t *testing.T) {
	b := newBlobs()
	amd := b.image("amd", amd64)
	target := withPlatform(amd, amd64)
	for range MaxIndexDepth {
		target = withPlatform(b.index(ocispec.MediaTypeImageIndex, target), amd64)
	}
	if got, err := manifestFor(t, b, target, platforms.Only(amd64)); err != nil || got != amd.Digest {
		t.Fatalf("%d nested indexes: %s, %v", MaxIndexDepth, got, err)
	}
	target = b.index(ocispec.MediaTypeImageIndex, target)
	if _, err := manifestFor(t, b, target, platforms.Only(amd64)); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "nests more than") {
		t.Errorf("%d nested indexes: %v, want too deep", MaxIndexDepth+1, err)
	}
}

func TestManifestBadBlobs(t *testing.T) {
	b := newBlobs()
	noConfig := b.addJSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}})
	odd := b.add("application/vnd.example+json", []byte(`{}`))
	badIndex := b.add(ocispec.MediaTypeImageIndex, []byte(`{"manifests":`))
	missing := withPlatform(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("gone"), Size: 4}, amd64)
	for _, tc := range []struct {
		name   string
		target ocispec.Descriptor
		kind   func(error) bool
		want   string
	}{
		{"manifest without config", noConfig, errdefs.IsInvalidArgument, "image manifest " + noConfig.Digest.String() + " has no config"},
		{"unknown media type", odd, errdefs.IsNotImplemented, "neither an image manifest nor an index"},
		{"index that is not JSON", badIndex, errdefs.IsInvalidArgument, "decoding image index " + badIndex.Digest.String()},
		{"missing manifest", b.index(ocispec.MediaTypeImageIndex, missing), errdefs.IsNotFound, "reading image manifest " + missing.Digest.String()},
	} {
		_, _, err := Manifest(context.Background(), b, tc.target, platforms.Only(amd64))
		if err == nil || !tc.kind(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}
