// Package layer reads and writes OCI image layers: Apply extracts a layer
// tar into a directory following the OCI rules for whiteouts and opaque
// directories, WriteDiff writes the difference between two directories as a
// layer tar.
//
// Apply never lets an entry land outside its root: every path is resolved
// inside the root (symlinks are followed as if the root were "/", with
// openat2 RESOLVE_IN_ROOT where the kernel has it), and every file is made,
// changed or removed relative to a directory descriptor opened that way.
package layer

import (
	"strings"
)

// Whiteout names of the OCI layer format.
const (
	// WhiteoutPrefix marks a deletion: ".wh.NAME" deletes NAME of the
	// layers below.
	WhiteoutPrefix = ".wh."
	// WhiteoutMetaPrefix starts the names of whiteout metadata files, of
	// which only WhiteoutOpaqueDir has a meaning.
	WhiteoutMetaPrefix = WhiteoutPrefix + WhiteoutPrefix
	// WhiteoutOpaqueDir makes its directory opaque: everything the layers
	// below hold in it is hidden.
	WhiteoutOpaqueDir = WhiteoutMetaPrefix + ".opq"
)

// Overlay filesystem markers, used when a layer is applied straight to an
// overlay upper directory or read from one.
const (
	// overlayOpaqueXattr set to "y" on a directory hides the lower layers'
	// entries in it.
	overlayOpaqueXattr = "trusted.overlay.opaque"
	// overlayXattrPrefix starts the extended attributes that overlayfs
	// interprets; a layer must neither carry nor set them.
	overlayXattrPrefix = "trusted.overlay."
	// paxXattrPrefix starts the PAX records that carry extended attributes.
	paxXattrPrefix = "SCHILY.xattr."
)

// ApplyOpts are the options of Apply.
type ApplyOpts struct {
	// OverlayWhiteouts turns whiteouts into overlayfs markers (a 0/0
	// character device, the trusted.overlay.opaque attribute) instead of
	// deleting from root.
	OverlayWhiteouts bool
	// Parents are the lower directories of the overlay whose upper
	// directory is root, topmost first (the order of overlayfs' lowerdir
	// option). Lookups that miss in root continue in them.
	Parents []string
	// PlainNames takes names that start with ".wh." as ordinary files, for
	// a tar that is a copy of files rather than an image layer.
	PlainNames bool

	// noOpenat2 makes Apply resolve paths in user space even when the
	// kernel has openat2, so that tests cover the fallback.
	noOpenat2 bool
}

// ApplyOpt sets an option of Apply.
type ApplyOpt func(*ApplyOpts)

// WithOverlayWhiteouts writes whiteouts as overlayfs markers, for a root that
// is an overlay upper directory.
func WithOverlayWhiteouts() ApplyOpt {
	return func(o *ApplyOpts) { o.OverlayWhiteouts = true }
}

// WithParents gives the lower directories of the overlay whose upper
// directory is the root, topmost first. Parent directories and hard link
// targets that the root lacks are looked up in them and copied up.
func WithParents(lowerDirs []string) ApplyOpt {
	return func(o *ApplyOpts) { o.Parents = append([]string(nil), lowerDirs...) }
}

// WithPlainNames takes every entry as a file to write: ".wh." names are not
// whiteouts. Copies of files (berth cp) use it; image layers must not.
func WithPlainNames() ApplyOpt {
	return func(o *ApplyOpts) { o.PlainNames = true }
}

// DiffOpts are the options of WriteDiff.
type DiffOpts struct {
	// UpperOverlay says that upper is an overlay upper directory whose
	// lower layers merge into lower: the diff is read from upper alone,
	// with its whiteout devices and opaque attributes.
	UpperOverlay bool
}

// DiffOpt sets an option of WriteDiff.
type DiffOpt func(*DiffOpts)

// WithUpperOverlay reads the changes from an overlay upper directory instead
// of comparing two whole trees.
func WithUpperOverlay() DiffOpt {
	return func(o *DiffOpts) { o.UpperOverlay = true }
}

// isOverlayXattr reports whether key is an attribute that overlayfs itself
// interprets.
func isOverlayXattr(key string) bool {
	return strings.HasPrefix(key, overlayXattrPrefix)
}
