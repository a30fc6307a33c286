package protoconv

import (
	"reflect"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/mount"
)

func TestDescriptorRoundTrip(t *testing.T) {
	d := ocispec.Descriptor{
		MediaType:   ocispec.MediaTypeImageIndex,
		Digest:      digest.FromString("index"),
		Size:        42,
		Annotations: map[string]string{ocispec.AnnotationRefName: "latest"},
	}
	if got := DescriptorFromProto(DescriptorToProto(d)); !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip changed the descriptor: %+v != %+v", got, d)
	}
	if got := DescriptorFromProto(nil); !reflect.DeepEqual(got, ocispec.Descriptor{}) {
		t.Fatalf("nil gave %+v", got)
	}
}

func TestTimestampRoundTrip(t *testing.T) {
	if TimestampToProto(time.Time{}) != nil {
		t.Fatal("zero time should become nil")
	}
	if !TimestampFromProto(nil).IsZero() {
		t.Fatal("nil should become the zero time")
	}
	now := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	if got := TimestampFromProto(TimestampToProto(now)); !got.Equal(now) {
		t.Fatalf("round trip changed the time: %v != %v", got, now)
	}
}

func TestMountsRoundTrip(t *testing.T) {
	ms := []mount.Mount{
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a:/b", "upperdir=/c", "workdir=/d"}},
		{Type: "bind", Source: "/src", Target: "sub", Options: []string{"ro", "rbind"}},
	}
	if got := MountsFromProto(MountsToProto(ms)); !reflect.DeepEqual(got, ms) {
		t.Fatalf("round trip changed the mounts: %+v != %+v", got, ms)
	}
	if got := MountsFromProto(MountsToProto(nil)); got != nil {
		t.Fatalf("no mounts gave %+v", got)
	}
}
