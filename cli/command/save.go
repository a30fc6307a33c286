package command

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/imageutil"
	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/images/archive"
)

func newSaveCommand(c *CLI) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save [OPTIONS] IMAGE [IMAGE...]",
		Short: "Save one or more images to a tar archive (streamed to STDOUT by default)",
		Long: `Save one or more images to a tar archive that 'docker load', 'podman load'
and 'skopeo copy docker-archive:' accept, and that holds an OCI layout too.

A name is saved with that name; an IMAGE ID is saved with every name of the image.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSave(cmd.Context(), c, output, args)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to a file, instead of STDOUT")
	return cmd
}

func runSave(ctx context.Context, c *CLI, output string, args []string) error {
	if output == "" && c.isTerminal(c.Out) {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "cowardly refusing to save to a terminal. Use the -o flag or redirect")
	}
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	r := imageutil.NewResolver(cl.Images, cl.Content)
	var imgs []images.Image
	seen := map[string]bool{}
	for _, arg := range args {
		m, err := r.Resolve(ctx, arg)
		if err != nil {
			return err
		}
		for _, img := range m.Images {
			if !seen[img.Name] {
				seen[img.Name] = true
				imgs = append(imgs, img.Image)
			}
		}
	}

	if output == "" {
		return archive.Export(ctx, cl.Content, c.Out, imgs)
	}
	var p *progress
	if c.isTerminal(c.Out) {
		p = newProgress(c.Out, "Saving", 0)
		defer p.done()
	}
	return writeAtomically(output, func(w io.Writer) error {
		return archive.Export(ctx, cl.Content, progressWriter{w: w, p: p}, imgs)
	})
}

// writeAtomically writes a temporary file next to path and renames it to
// path once write succeeded, so that a failed save leaves no partial file
// and never clobbers an older archive with a broken one.
func writeAtomically(path string, write func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; an archive gets the mode of any file
	// the user creates.
	if err := f.Chmod(0o666 &^ umask()); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// umask returns the process's file mode creation mask, read from
// /proc/self/status (setting it to read it would race with other threads).
func umask() os.FileMode {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0o022
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
				return os.FileMode(m)
			}
		}
	}
	return 0o022
}
