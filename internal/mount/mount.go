// Package mount applies and removes the mounts that snapshotters return as
// data. It is the only place in berth that calls mount(2) and umount(2).
package mount

// Mount is a filesystem mount as data; the caller chooses the target.
type Mount struct {
	// Type is the filesystem type: "overlay", "bind", "tmpfs", ...
	Type string
	// Source is the device, directory or "overlay".
	Source string
	// Target is a sub-path below the caller's target; usually empty.
	Target string
	// Options are mount(8)-style options ("ro", "rbind", "lowerdir=...").
	Options []string
}
