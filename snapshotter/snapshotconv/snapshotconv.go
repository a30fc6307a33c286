// Package snapshotconv converts snapshot metadata between its Go form
// (package snapshots) and its protobuf form, for the Snapshots gRPC server
// and its client proxy. Mounts convert with internal/protoconv.
package snapshotconv

import (
	"github.com/berth-engine/berth/internal/protoconv"
	snapshotsv1 "github.com/berth-engine/berth/proto/snapshots/v1"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// KindToProto converts a kind.
func KindToProto(k snapshots.Kind) snapshotsv1.Kind {
	switch k {
	case snapshots.KindView:
		return snapshotsv1.Kind_KIND_VIEW
	case snapshots.KindActive:
		return snapshotsv1.Kind_KIND_ACTIVE
	case snapshots.KindCommitted:
		return snapshotsv1.Kind_KIND_COMMITTED
	}
	return snapshotsv1.Kind_KIND_UNSPECIFIED
}

// KindFromProto converts a protobuf kind.
func KindFromProto(k snapshotsv1.Kind) snapshots.Kind {
	switch k {
	case snapshotsv1.Kind_KIND_VIEW:
		return snapshots.KindView
	case snapshotsv1.Kind_KIND_ACTIVE:
		return snapshots.KindActive
	case snapshotsv1.Kind_KIND_COMMITTED:
		return snapshots.KindCommitted
	}
	return snapshots.KindUnknown
}

// InfoToProto converts snapshot metadata.
func InfoToProto(info snapshots.Info) *snapshotsv1.Info {
	return &snapshotsv1.Info{
		Name:      info.Name,
		Parent:    info.Parent,
		Kind:      KindToProto(info.Kind),
		CreatedAt: protoconv.TimestampToProto(info.Created),
		UpdatedAt: protoconv.TimestampToProto(info.Updated),
		Labels:    info.Labels,
	}
}

// InfoFromProto converts protobuf snapshot metadata; nil gives the zero Info.
func InfoFromProto(info *snapshotsv1.Info) snapshots.Info {
	if info == nil {
		return snapshots.Info{}
	}
	return snapshots.Info{
		Kind:    KindFromProto(info.GetKind()),
		Name:    info.GetName(),
		Parent:  info.GetParent(),
		Labels:  info.GetLabels(),
		Created: protoconv.TimestampFromProto(info.GetCreatedAt()),
		Updated: protoconv.TimestampFromProto(info.GetUpdatedAt()),
	}
}
