// Package protoconv converts the types that several services share between
// their Go form and their protobuf form.
package protoconv

import (
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-engine/berth/internal/mount"
	typesv1 "github.com/berth-engine/berth/proto/types/v1"
)

// DescriptorToProto converts an OCI descriptor. The protobuf form carries
// media type, digest, size and annotations only; platform, URLs and embedded
// data do not cross the wire.
func DescriptorToProto(d ocispec.Descriptor) *typesv1.Descriptor {
	return &typesv1.Descriptor{
		MediaType:   d.MediaType,
		Digest:      d.Digest.String(),
		Size:        d.Size,
		Annotations: d.Annotations,
	}
}

// DescriptorFromProto converts a protobuf descriptor; nil gives the zero
// descriptor.
func DescriptorFromProto(d *typesv1.Descriptor) ocispec.Descriptor {
	if d == nil {
		return ocispec.Descriptor{}
	}
	return ocispec.Descriptor{
		MediaType:   d.GetMediaType(),
		Digest:      digest.Digest(d.GetDigest()),
		Size:        d.GetSize(),
		Annotations: d.GetAnnotations(),
	}
}

// TimestampToProto converts t; the zero time becomes nil so that "unset"
// survives the round trip.
func TimestampToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// TimestampFromProto converts ts; nil becomes the zero time.
func TimestampFromProto(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// MountsToProto converts mounts; nil gives an empty list.
func MountsToProto(mounts []mount.Mount) []*typesv1.Mount {
	out := make([]*typesv1.Mount, 0, len(mounts))
	for _, m := range mounts {
		out = append(out, &typesv1.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out
}

// MountsFromProto converts protobuf mounts; nil gives none.
func MountsFromProto(mounts []*typesv1.Mount) []mount.Mount {
	if len(mounts) == 0 {
		return nil
	}
	out := make([]mount.Mount, 0, len(mounts))
	for _, m := range mounts {
		out = append(out, mount.Mount{Type: m.GetType(), Source: m.GetSource(), Target: m.GetTarget(), Options: m.GetOptions()})
	}
	return out
}
