package mount

import "strings"

// ReadOnlyView returns mounts that show what mounts show, read-only, and
// that may be mounted while mounts are in use: an overlay with an upper
// directory becomes an overlay whose lower directories are upper then the
// old lowers, with no upper or work directory, so that the upper directory
// is never mounted writable twice; other mounts get "ro".
func ReadOnlyView(mounts []Mount) []Mount {
	out := make([]Mount, len(mounts))
	for i, m := range mounts {
		var upper, lower string
		var opts []string
		for _, o := range m.Options {
			switch {
			case strings.HasPrefix(o, "upperdir="):
				upper = strings.TrimPrefix(o, "upperdir=")
			case strings.HasPrefix(o, "lowerdir="):
				lower = strings.TrimPrefix(o, "lowerdir=")
			case strings.HasPrefix(o, "workdir="), o == "rw", o == "ro":
			default:
				opts = append(opts, o)
			}
		}
		if m.Type == "overlay" && upper != "" {
			if lower != "" {
				upper += ":" + lower
			}
			lower = upper
		}
		if lower != "" {
			opts = append(opts, "lowerdir="+lower)
		}
		m.Options = append(opts, "ro")
		out[i] = m
	}
	return out
}
