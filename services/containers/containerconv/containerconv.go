// Package containerconv converts container records between their Go form
// and the form the Containers service sends, for its server and its proxy
// alike.
package containerconv

import (
	"github.com/berth-engine/berth/internal/protoconv"
	containersv1 "github.com/berth-engine/berth/proto/containers/v1"
	"github.com/berth-engine/berth/services/containers"
)

// ToProto converts a container record for the wire.
func ToProto(c containers.Container) *containersv1.Container {
	return &containersv1.Container{
		Id:     c.ID,
		Name:   c.Name,
		Labels: c.Labels,
		Image:  c.Image,
		Runtime: &containersv1.Container_Runtime{
			Name:    c.Runtime.Name,
			Options: c.Runtime.Options,
		},
		Spec:        c.Spec,
		Snapshotter: c.Snapshotter,
		SnapshotKey: c.SnapshotKey,
		CreatedAt:   protoconv.TimestampToProto(c.CreatedAt),
		UpdatedAt:   protoconv.TimestampToProto(c.UpdatedAt),
		Extensions:  c.Extensions,
	}
}

// FromProto converts a container record from the wire.
func FromProto(c *containersv1.Container) containers.Container {
	return containers.Container{
		ID:     c.GetId(),
		Name:   c.GetName(),
		Labels: c.GetLabels(),
		Image:  c.GetImage(),
		Runtime: containers.RuntimeInfo{
			Name:    c.GetRuntime().GetName(),
			Options: c.GetRuntime().GetOptions(),
		},
		Spec:        c.GetSpec(),
		Snapshotter: c.GetSnapshotter(),
		SnapshotKey: c.GetSnapshotKey(),
		CreatedAt:   protoconv.TimestampFromProto(c.GetCreatedAt()),
		UpdatedAt:   protoconv.TimestampFromProto(c.GetUpdatedAt()),
		Extensions:  c.GetExtensions(),
	}
}
