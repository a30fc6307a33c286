package imageutil

import (
	"strconv"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/services/images"
)

// LabelSummary is the image record label that caches what a listing shows
// of the record's target, so that `berth images` reads no blob: one
// Images.List answers it, however many images there are.
//
// The value names the target it was computed from, and the platform for an
// index, so it cannot be wrongly believed: a record whose target moved, or
// a listing for another platform, ignores it and reads the blobs. berth
// sets it when it names an image (load, tag); a listing that finds it
// missing or stale sets it for the next one.
//
//	v1 <target> <platform|-> <manifest|-> <config> <config size> <size> <created|->
//
// (the manifest is "-" when it is the target itself).
const LabelSummary = "berth.image.summary"

const summaryVersion = "v1"

// summaryValue is the LabelSummary of target, whose details are d, for
// platform (used only when target is an index).
func summaryValue(target ocispec.Descriptor, platform string, d *Details) string {
	created := "-"
	if !d.Created.IsZero() {
		created = d.Created.UTC().Format(time.RFC3339Nano)
	}
	manifest := d.Manifest.Digest.String()
	if d.Manifest.Digest == target.Digest {
		manifest = "-"
	}
	return strings.Join([]string{
		summaryVersion,
		target.Digest.String(),
		summaryPlatform(target, platform),
		manifest,
		d.ConfigDesc.Digest.String(),
		strconv.FormatInt(d.ConfigDesc.Size, 10),
		strconv.FormatInt(d.Size, 10),
		created,
	}, " ")
}

// summaryPlatform is "-" for a manifest, which is the same image on every
// platform, and the platform for an index.
func summaryPlatform(target ocispec.Descriptor, platform string) string {
	if images.IsManifestType(target.MediaType) {
		return "-"
	}
	return platform
}

// parseSummary returns the details a LabelSummary value gives for target
// on platform, or false when it is not for them (or not a summary at all).
func parseSummary(v string, target ocispec.Descriptor, platform string) (*Details, bool) {
	f := strings.Split(v, " ")
	if len(f) != 8 || f[0] != summaryVersion || f[1] != target.Digest.String() {
		return nil, false
	}
	want := summaryPlatform(target, platform)
	if want == "" || f[2] != want {
		return nil, false
	}
	manifest, config := digest.Digest(f[3]), digest.Digest(f[4])
	if manifest == "-" {
		manifest = target.Digest
	}
	if !validDigest(manifest) || !validDigest(config) {
		return nil, false
	}
	cfgSize, err1 := strconv.ParseInt(f[5], 10, 64)
	size, err2 := strconv.ParseInt(f[6], 10, 64)
	if err1 != nil || err2 != nil || cfgSize < 0 || size < 0 {
		return nil, false
	}
	d := &Details{
		Manifest:   ocispec.Descriptor{Digest: manifest},
		ConfigDesc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: config, Size: cfgSize},
		Size:       size,
	}
	if manifest == target.Digest {
		d.Manifest = target
	}
	if f[7] != "-" {
		t, err := time.Parse(time.RFC3339Nano, f[7])
		if err != nil {
			return nil, false
		}
		d.Created = t
	}
	return d, true
}

// validDigest checks a digest without the regular expression of
// digest.Validate for the common sha256 case: a listing checks thousands.
func validDigest(d digest.Digest) bool {
	hex, ok := strings.CutPrefix(string(d), "sha256:")
	if !ok {
		return d.Validate() == nil
	}
	if len(hex) != 64 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
