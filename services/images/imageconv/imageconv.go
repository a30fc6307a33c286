// Package imageconv converts image records between their Go form and the
// form the Images service sends, for its server and its proxy alike.
package imageconv

import (
	"github.com/berth-engine/berth/internal/protoconv"
	imagesv1 "github.com/berth-engine/berth/proto/images/v1"
	"github.com/berth-engine/berth/services/images"
)

// ToProto converts an image record for the wire.
func ToProto(img images.Image) *imagesv1.Image {
	return &imagesv1.Image{
		Name:      img.Name,
		Labels:    img.Labels,
		Target:    protoconv.DescriptorToProto(img.Target),
		CreatedAt: protoconv.TimestampToProto(img.CreatedAt),
		UpdatedAt: protoconv.TimestampToProto(img.UpdatedAt),
	}
}

// FromProto converts an image record from the wire.
func FromProto(img *imagesv1.Image) images.Image {
	return images.Image{
		Name:      img.GetName(),
		Labels:    img.GetLabels(),
		Target:    protoconv.DescriptorFromProto(img.GetTarget()),
		CreatedAt: protoconv.TimestampFromProto(img.GetCreatedAt()),
		UpdatedAt: protoconv.TimestampFromProto(img.GetUpdatedAt()),
	}
}
