package snapshots

import "github.com/berth-engine/berth/internal/filters"

// InfoAdaptor exposes a snapshot's fields to filters: name, parent, kind,
// labels.KEY.
func InfoAdaptor(info Info) filters.Adaptor {
	return filters.AdaptorFunc(func(path []string) (string, bool) {
		if len(path) == 0 {
			return "", false
		}
		switch path[0] {
		case "name":
			return info.Name, true
		case "parent":
			return info.Parent, info.Parent != ""
		case "kind":
			return info.Kind.String(), true
		case "labels":
			return filters.MapField(info.Labels, path)
		}
		return "", false
	})
}
