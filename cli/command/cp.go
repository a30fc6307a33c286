package command

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/cli/formatter"
	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/diff/layer"
)

type cpOptions struct {
	archive    bool
	followLink bool
	quiet      bool
}

func newCpCommand(c *CLI) *cobra.Command {
	var o cpOptions
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n  berth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "Copy files/folders between a container and the local filesystem",
		Long: `Copy files/folders between a container and the local filesystem

Use '-' as the source to read a tar archive from stdin
and extract it to a directory destination in a container.
Use '-' as the destination to stream a tar archive of a
container source to stdout.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := untilSignal(cmd.Context())
			defer stop()
			return runCp(ctx, c, o, args[0], args[1])
		},
	}
	cmd.Flags().BoolVarP(&o.archive, "archive", "a", false, "Archive mode (copy all uid/gid information)")
	cmd.Flags().BoolVarP(&o.followLink, "follow-link", "L", false, "Always follow symbol link in SRC_PATH")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "Suppress progress output during copy")
	return cmd
}

// splitCpArg splits CONTAINER:PATH as Docker does: an absolute path, or
// one whose part before the colon starts with ".", is local.
func splitCpArg(arg string) (container, p string) {
	if filepath.IsAbs(arg) {
		return "", arg
	}
	container, p, ok := strings.Cut(arg, ":")
	if !ok || strings.HasPrefix(container, ".") {
		return "", arg
	}
	return container, p
}

// cpEnd is one end of a copy: a path inside a root folder, which is "/"
// for the local filesystem and the container's root for a container.
type cpEnd struct {
	root string
	path string
	// container is the container's name, "" for the local filesystem.
	container string
}

func (e cpEnd) String() string {
	if e.container == "" {
		return e.path
	}
	return e.container + ":" + e.path
}

func runCp(ctx context.Context, c *CLI, o cpOptions, srcArg, dstArg string) error {
	srcCtr, srcPath := splitCpArg(srcArg)
	dstCtr, dstPath := splitCpArg(dstArg)
	switch {
	case srcCtr != "" && dstCtr != "":
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "copying between containers is not supported: copy to a local path, then from it")
	case srcCtr == "" && dstCtr == "":
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "must specify at least one container source: write CONTAINER:PATH on one side")
	case srcPath == "" || dstPath == "":
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "filesystem path cannot be empty: write CONTAINER:/path")
	}
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	name := srcCtr + dstCtr
	ctr, err := resolveContainer(ctx, cl, name)
	if err != nil {
		return err
	}
	return withContainerRoot(ctx, cl, ctr, false, func(root string) error {
		src := cpEnd{root: "/", path: srcPath}
		dst := cpEnd{root: "/", path: dstPath}
		if srcCtr != "" {
			src.root, src.container = root, name
			if dstPath != "-" {
				abs, err := filepath.Abs(dstPath)
				if err != nil {
					return err
				}
				dst.path = keepTrailing(dstPath, abs)
			}
		} else {
			dst.root, dst.container = root, name
			if srcPath != "-" {
				abs, err := filepath.Abs(srcPath)
				if err != nil {
					return err
				}
				src.path = keepTrailing(srcPath, abs)
			}
		}
		n, err := copyPath(ctx, c, o, src, dst)
		if err != nil {
			return err
		}
		if !o.quiet && src.path != "-" && dst.path != "-" {
			fmt.Fprintf(c.Err, "Successfully copied %s to %s\n", formatter.HumanSize(n), dst)
		}
		return nil
	})
}

// keepTrailing keeps the "/" or "/." that ends orig on the absolute path
// abs, which filepath.Abs cleaned away: they change what a copy does.
func keepTrailing(orig, abs string) string {
	switch {
	case orig == "." || strings.HasSuffix(orig, "/."):
		return strings.TrimSuffix(abs, "/") + "/."
	case strings.HasSuffix(orig, "/") && abs != "/":
		return abs + "/"
	}
	return abs
}

// withContainerRoot calls fn with a folder that shows the container's root
// filesystem. A running (or paused) container is seen through its init
// process's root, /proc/PID/root, so that the tmpfs and bind mounts inside
// it are seen as the container sees them. A stopped container's snapshot
// is mounted in a temporary folder, read-only when readOnly, once berthd
// deleted its stopped task, so that its rootfs is not mounted twice.
func withContainerRoot(ctx context.Context, cl *client.Client, ctr containers.Container, readOnly bool, fn func(root string) error) error {
	p, err := taskOf(ctx, cl, ctr.ID)
	if err != nil {
		return err
	}
	if p != nil && p.GetPid() > 0 && !readOnly {
		switch p.GetStatus() {
		case tasksv1.Status_STATUS_RUNNING, tasksv1.Status_STATUS_PAUSED, tasksv1.Status_STATUS_CREATED:
			return withProcessRoot(ctx, cl, ctr, p.GetPid(), fn)
		}
	}
	if p != nil && !isRunning(p) && p.GetStatus() != tasksv1.Status_STATUS_CREATED {
		// berthd's supervisor deletes the exited task, which unmounts it.
		if _, _, err := waitRecorded(ctx, cl, ctr.ID); err != nil {
			return err
		}
		p = nil
	}
	if ctr.SnapshotKey == "" || ctr.Snapshotter == "" {
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s has no root filesystem snapshot", ctr.Name)
	}
	mounts, err := cl.Snapshotter(ctr.Snapshotter).Mounts(ctx, ctr.SnapshotKey)
	if err != nil {
		return fmt.Errorf("reading the root filesystem mounts of container %s: %w", ctr.Name, err)
	}
	if readOnly || isRunning(p) || p.GetStatus() == tasksv1.Status_STATUS_CREATED {
		// The task's rootfs is mounted: never mount its upper directory
		// writable a second time.
		mounts = mount.ReadOnlyView(mounts)
	}
	return mount.WithTempMount(ctx, mounts, fn)
}

// withProcessRoot calls fn with the root of the container's process pid.
// The root is held open, and the task is asked again once it is, so that a
// pid reused by another process after the container exited is never taken
// for the container's.
func withProcessRoot(ctx context.Context, cl *client.Client, ctr containers.Container, pid uint32, fn func(root string) error) error {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "opening the root of container %s (pid %d): %v: is it still running?", ctr.Name, pid, err)
	}
	defer unix.Close(fd)
	again, err := taskOf(ctx, cl, ctr.ID)
	if err != nil {
		return err
	}
	if again.GetPid() != pid || again.GetStatus() == tasksv1.Status_STATUS_STOPPED {
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s stopped while berth opened its root: try again", ctr.Name)
	}
	return fn(fmt.Sprintf("/proc/self/fd/%d", fd))
}

// copyPath copies src to dst with Docker's rules, through a tar stream
// that layer.WriteTree writes and layer.Apply reads, both resolving every
// path inside their root. It returns the size of the tar stream.
func copyPath(ctx context.Context, c *CLI, o cpOptions, src, dst cpEnd) (int64, error) {
	if src.path == "-" {
		return copyFromStdin(ctx, c, o, dst)
	}
	srcDir := hasTrailingSep(src.path)
	srcContents := strings.HasSuffix(src.path, "/.") || src.path == "."
	srcInfo, err := layer.Stat(src.root, src.path, o.followLink || srcDir)
	if err != nil && !errdefs.IsNotFound(err) {
		return 0, cpError(src, err)
	}
	if !srcInfo.Exists {
		if src.container != "" {
			return 0, errdefs.Errorf(errdefs.ErrNotFound, "Could not find the file %s in container %s", src.path, src.container)
		}
		return 0, errdefs.Errorf(errdefs.ErrNotFound, "lstat %s: no such file or directory", src.path)
	}
	if srcDir && !srcInfo.IsDir {
		return 0, errdefs.Errorf(errdefs.ErrInvalidArgument, "not a directory: %s ends with \"/\" but is a file", src)
	}
	srcBase := path.Base(path.Clean("/" + src.path))

	if dst.path == "-" {
		return 0, layer.WriteTree(ctx, c.Out, src.root, srcInfo.Path, srcBase)
	}
	dstInfo, err := layer.Stat(dst.root, dst.path, true)
	if err != nil {
		return 0, cpError(dst, err)
	}
	var prefix, name string
	switch {
	case !dstInfo.Exists:
		if hasTrailingSep(dst.path) && !srcInfo.IsDir {
			return 0, errdefs.Errorf(errdefs.ErrNotFound, "no such directory: %s ends with \"/\" but does not exist: create it first", dst)
		}
		prefix, name = path.Dir("/"+dstInfo.Path), path.Base("/"+dstInfo.Path)
	case dstInfo.IsDir:
		prefix, name = "/"+dstInfo.Path, srcBase
		if srcInfo.IsDir && (srcContents || srcBase == "/") {
			name = ""
		}
	default:
		if srcInfo.IsDir {
			return 0, errdefs.Errorf(errdefs.ErrInvalidArgument, "cannot copy directory %s onto file %s: name a directory as the destination", src, dst)
		}
		prefix, name = path.Dir("/"+dstInfo.Path), path.Base("/"+dstInfo.Path)
	}

	if name != "" {
		// The tar replaces what is there; Docker refuses to swap a folder
		// for a file or a file for a folder.
		target := cpEnd{root: dst.root, path: path.Join(prefix, name), container: dst.container}
		ti, err := layer.Stat(target.root, target.path, false)
		if err != nil {
			return 0, cpError(target, err)
		}
		switch {
		case ti.Exists && ti.IsDir && !srcInfo.IsDir:
			return 0, errdefs.Errorf(errdefs.ErrInvalidArgument, "cannot overwrite directory %s with non-directory %s", target, src)
		case ti.Exists && !ti.IsDir && srcInfo.IsDir:
			return 0, errdefs.Errorf(errdefs.ErrInvalidArgument, "cannot overwrite non-directory %s with directory %s", target, src)
		}
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(layer.WriteTree(ctx, pw, src.root, srcInfo.Path, name))
	}()
	defer pr.Close()
	n, err := extract(ctx, pr, dst, prefix, ownerFor(o, dst))
	if err != nil {
		return n, fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	return n, nil
}

// copyFromStdin extracts the tar on stdin into the directory dst.
func copyFromStdin(ctx context.Context, c *CLI, o cpOptions, dst cpEnd) (int64, error) {
	dstInfo, err := layer.Stat(dst.root, dst.path, true)
	if err != nil {
		return 0, cpError(dst, err)
	}
	if !dstInfo.Exists || !dstInfo.IsDir {
		return 0, errdefs.Errorf(errdefs.ErrInvalidArgument, "destination %q must be a directory", dst)
	}
	n, err := extract(ctx, c.In, dst, "/"+dstInfo.Path, ownerFor(o, dst))
	if err != nil {
		return n, fmt.Errorf("extracting the tar on stdin to %s: %w", dst, err)
	}
	return n, nil
}

// owner is the uid and gid that copied files get; nil keeps those of the
// tar.
type owner struct{ uid, gid int }

// ownerFor gives, without -a, the owner Docker gives: root in a container,
// the user running berth on the local filesystem.
func ownerFor(o cpOptions, dst cpEnd) *owner {
	switch {
	case o.archive:
		return nil
	case dst.container != "":
		return &owner{}
	}
	return &owner{uid: os.Getuid(), gid: os.Getgid()}
}

// extract applies the tar r under the folder prefix of dst's root, with
// the entries' owners replaced by own when it is not nil. Names that climb
// out of prefix are refused.
func extract(ctx context.Context, r io.Reader, dst cpEnd, prefix string, own *owner) (int64, error) {
	pr, pw := io.Pipe()
	var n int64
	go func() {
		var err error
		n, err = rewriteTar(pw, r, prefix, own)
		pw.CloseWithError(err)
	}()
	_, err := layer.Apply(ctx, dst.root, pr, layer.WithPlainNames())
	pr.CloseWithError(errors.New("extraction stopped"))
	return n, err
}

// rewriteTar copies the tar r to w with every name (and hard link target)
// moved under prefix, and returns the bytes read from r.
func rewriteTar(w io.Writer, r io.Reader, prefix string, own *owner) (int64, error) {
	cr := &countReader{r: r}
	tr := tar.NewReader(cr)
	tw := tar.NewWriter(w)
	under := func(name string) (string, error) {
		p := path.Clean(strings.TrimLeft(name, "/"))
		if p == ".." || strings.HasPrefix(p, "../") {
			return "", errdefs.Errorf(errdefs.ErrInvalidArgument, "tar entry %q climbs out of the destination with \"..\"", name)
		}
		return path.Join(prefix, p), nil
	}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return cr.n, fmt.Errorf("reading the tar: %w", err)
		}
		if hdr.Name, err = under(hdr.Name); err != nil {
			return cr.n, err
		}
		if hdr.Typeflag == tar.TypeLink {
			if hdr.Linkname, err = under(hdr.Linkname); err != nil {
				return cr.n, err
			}
		}
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		if own != nil {
			hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = own.uid, own.gid, "", ""
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return cr.n, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return cr.n, err
		}
	}
	return cr.n, tw.Close()
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func hasTrailingSep(p string) bool {
	return strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.")
}

// cpError says which end of the copy a lookup failed at.
func cpError(e cpEnd, err error) error {
	return fmt.Errorf("%s: %w", e, err)
}
