package metadata

import (
	"fmt"
	"strings"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/leases"
)

const (
	// LabelGCRefContent prefixes the labels of a content record that name
	// other content the record refers to: any label whose key starts with it
	// ("berth.gc.ref.content.m.0", "berth.gc.ref.content.config", ...) holds
	// a digest that stays alive as long as the record does.
	LabelGCRefContent = "berth.gc.ref.content"
	// LabelGCRefSnapshot followed by a snapshotter's name prefixes the
	// labels of a content or snapshot record that name a snapshot of that
	// snapshotter ("berth.gc.ref.snapshot.overlay" = a chain ID): the
	// snapshot stays alive as long as the record does. A "/" may follow the
	// snapshotter's name to give several ("berth.gc.ref.snapshot.overlay/1").
	LabelGCRefSnapshot = "berth.gc.ref.snapshot."
	// LabelGCRoot on a snapshot makes it a root of garbage collection
	// whatever its value (conventionally "true"): it stays until removed.
	LabelGCRoot = "berth.gc.root"
	// LabelGCExpire holds the RFC 3339 time after which the garbage collector
	// deletes a lease.
	LabelGCExpire = leases.LabelExpire

	// labelGCPrefix starts every label the garbage collector reads.
	labelGCPrefix = "berth.gc."

	// maxLabelSize bounds a label's key and value together.
	maxLabelSize = 4096
)

// validateLabels returns an invalid-argument error for an empty key or a
// label whose key and value exceed maxLabelSize bytes.
func validateLabels(labels map[string]string) error {
	for k, v := range labels {
		if err := validateLabel(k, v); err != nil {
			return err
		}
	}
	return nil
}

func validateLabel(k, v string) error {
	if k == "" {
		return fmt.Errorf("label key must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(k)+len(v) > maxLabelSize {
		short := k
		if len(short) > 64 {
			short = short[:64] + "..."
		}
		return fmt.Errorf("label %q is %d bytes, more than the limit of %d for key and value together: %w",
			short, len(k)+len(v), maxLabelSize, errdefs.ErrInvalidArgument)
	}
	return nil
}

// applyLabelPaths changes labels as fieldpaths ask: "<prefix>" replaces them
// all with from, "<prefix>.KEY" sets KEY from from (or removes it when from
// has no value for it). It reports whether any fieldpath was for labels, and
// leaves other fieldpaths alone.
func applyLabelPaths(labels map[string]string, from map[string]string, prefix, fieldpath string) (map[string]string, bool) {
	switch {
	case fieldpath == prefix:
		return copyMap(from), true
	case strings.HasPrefix(fieldpath, prefix+"."):
		key := strings.TrimPrefix(fieldpath, prefix+".")
		if labels == nil {
			labels = map[string]string{}
		}
		if v, ok := from[key]; ok && v != "" {
			labels[key] = v
		} else {
			delete(labels, key)
		}
		return labels, true
	}
	return labels, false
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
