package content

import (
	"strconv"

	"github.com/berth-engine/berth/internal/filters"
)

// InfoAdaptor exposes a blob's fields to filters: digest, size, labels.KEY.
func InfoAdaptor(info Info) filters.Adaptor {
	return filters.AdaptorFunc(func(path []string) (string, bool) {
		if len(path) == 0 {
			return "", false
		}
		switch path[0] {
		case "digest":
			return info.Digest.String(), true
		case "size":
			return strconv.FormatInt(info.Size, 10), true
		case "labels":
			return filters.MapField(info.Labels, path)
		}
		return "", false
	})
}

// StatusAdaptor exposes an ingest's fields to filters: ref, expected,
// total, offset.
func StatusAdaptor(st Status) filters.Adaptor {
	return filters.AdaptorFunc(func(path []string) (string, bool) {
		if len(path) != 1 {
			return "", false
		}
		switch path[0] {
		case "ref":
			return st.Ref, true
		case "expected":
			return st.Expected.String(), st.Expected != ""
		case "total":
			return strconv.FormatInt(st.Total, 10), true
		case "offset":
			return strconv.FormatInt(st.Offset, 10), true
		}
		return "", false
	})
}
