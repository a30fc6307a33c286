package imageutil

import (
	"path"
	"slices"
	"strings"

	distref "github.com/distribution/reference"

	"github.com/berth-engine/berth/internal/errdefs"
)

// Filter selects images the way `docker images --filter` does. Values of
// one key are alternatives; different keys must all hold.
type Filter struct {
	dangling   *bool
	references []string
	labels     []string
}

// ParseFilter parses --filter values: "dangling=true|false",
// "reference=PATTERN" (a glob over familiar names, "busybox:*"),
// "label=KEY" and "label=KEY=VALUE" (over the config's labels).
func ParseFilter(args []string) (Filter, error) {
	var f Filter
	for _, a := range args {
		key, value, ok := strings.Cut(a, "=")
		if !ok {
			return f, errdefs.Errorf(errdefs.ErrInvalidArgument, "bad filter %q: want KEY=VALUE (dangling=true, reference=busybox:*, label=KEY[=VALUE])", a)
		}
		switch strings.ToLower(key) {
		case "dangling":
			var d bool
			switch strings.ToLower(value) {
			case "true", "1":
				d = true
			case "false", "0":
			default:
				return f, errdefs.Errorf(errdefs.ErrInvalidArgument, "bad filter %q: dangling takes true or false", a)
			}
			if f.dangling != nil && *f.dangling != d {
				return f, errdefs.Errorf(errdefs.ErrInvalidArgument, "filters dangling=true and dangling=false conflict")
			}
			f.dangling = &d
		case "reference":
			if _, err := path.Match(value, ""); err != nil {
				return f, errdefs.Errorf(errdefs.ErrInvalidArgument, "bad filter %q: %v", a, err)
			}
			f.references = append(f.references, value)
		case "label":
			f.labels = append(f.labels, value)
		default:
			return f, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid filter %q: the keys are dangling, reference and label", key)
		}
	}
	return f, nil
}

// AddReference adds a reference pattern, as the positional
// [REPOSITORY[:TAG]] of `docker images` does.
func (f *Filter) AddReference(pattern string) { f.references = append(f.references, pattern) }

// Match reports whether img passes the filter.
func (f Filter) Match(img Image) bool {
	if f.dangling != nil && img.Dangling() != *f.dangling {
		return false
	}
	if len(f.references) > 0 && !slices.ContainsFunc(f.references, func(p string) bool { return MatchReference(p, img.Name) }) {
		return false
	}
	for _, l := range f.labels {
		if !matchLabel(l, img) {
			return false
		}
	}
	return true
}

// MatchReference reports whether the image record name matches a glob
// pattern, as Docker's reference filter does: against the familiar form
// ("busybox:latest") or the familiar repository alone ("busybox").
func MatchReference(pattern, name string) bool {
	if IsDangling(name) {
		return false
	}
	ref, err := distref.ParseNormalizedNamed(name)
	if err != nil {
		return false
	}
	ok, _ := distref.FamiliarMatch(pattern, ref)
	return ok
}

// NeedsConfig reports whether Match looks into image configs, which must
// then be loaded (Resolver.LoadConfigs) before.
func (f Filter) NeedsConfig() bool { return len(f.labels) > 0 }

func matchLabel(l string, img Image) bool {
	if img.Details == nil || img.Details.Config() == nil {
		return false
	}
	key, value, hasValue := strings.Cut(l, "=")
	v, ok := img.Details.Config().Config.Labels[key]
	return ok && (!hasValue || v == value)
}
