package containers

import "github.com/berth-engine/berth/internal/filters"

// Adaptor exposes the fields of c that List filters match: id, name,
// image, runtime.name, snapshotter, snapshot_key and labels.KEY.
func Adaptor(c Container) filters.Adaptor {
	return filters.AdaptorFunc(func(path []string) (string, bool) {
		if len(path) == 0 {
			return "", false
		}
		switch path[0] {
		case "id":
			return c.ID, true
		case "name":
			return c.Name, true
		case "image":
			return c.Image, c.Image != ""
		case "runtime":
			if len(path) == 2 && path[1] == "name" {
				return c.Runtime.Name, true
			}
		case "snapshotter":
			return c.Snapshotter, c.Snapshotter != ""
		case "snapshot_key":
			return c.SnapshotKey, c.SnapshotKey != ""
		case "labels":
			return filters.MapField(c.Labels, path)
		}
		return "", false
	})
}
