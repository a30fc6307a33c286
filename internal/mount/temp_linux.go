package mount

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// WithTempMount mounts mounts in a fresh folder under os.TempDir, calls f
// with that folder, and always unmounts and removes it afterwards.
func WithTempMount(ctx context.Context, mounts []Mount, f func(root string) error) error {
	return WithTempMountIn(ctx, "", mounts, f)
}

// WithTempMountIn is WithTempMount with the fresh folder made under base
// (os.TempDir when base is ""). The folder is removed only once nothing is
// mounted on it any more, so a failed unmount never costs the mounted data.
func WithTempMountIn(ctx context.Context, base string, mounts []Mount, f func(root string) error) (retErr error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	if base == "" {
		base = os.TempDir()
	} else if err := os.MkdirAll(base, 0o700); err != nil {
		return fmt.Errorf("creating the folder for temporary mounts %s: %w", base, err)
	}
	root, err := os.MkdirTemp(base, "berth-mount-")
	if err != nil {
		return fmt.Errorf("creating a temporary mount point: %w", err)
	}
	defer func() {
		if err := UnmountAll(root); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("temporary mount point %s left in place: %w", root, err))
			return
		}
		if err := os.Remove(root); err != nil {
			retErr = errors.Join(retErr, fmt.Errorf("removing temporary mount point: %w", err))
		}
	}()
	if err := All(mounts, root); err != nil {
		return err
	}
	return f(root)
}
