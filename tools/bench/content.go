package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
)

// benchContentWrite writes a 512 MiB blob through the Content service and
// compares it with hashing and copying the same file (sha256sum + cp).
func benchContentWrite(ctx context.Context, h *harness) (result, error) {
	const size = 512 << 20
	src := filepath.Join(h.dir, "blob")
	if err := writeRandomFile(src, size); err != nil {
		return result{}, err
	}
	defer os.Remove(src)
	dst := filepath.Join(h.dir, "blob.copy")
	defer os.Remove(dst)

	ref, err := median(h.runs, func() (time.Duration, error) {
		os.Remove(dst)
		d1, err := timeCommand("sha256sum", src)
		if err != nil {
			return 0, err
		}
		d2, err := timeCommand("cp", src, dst)
		return d1 + d2, err
	})
	if err != nil {
		return result{}, err
	}
	nctx := h.ctx(ctx)
	berth, err := median(h.runs, func() (time.Duration, error) {
		f, err := os.Open(src)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		start := time.Now()
		w, err := h.content.Writer(nctx, content.WithRef(fmt.Sprintf("bench-%d", time.Now().UnixNano())),
			content.WithDescriptor(ocispec.Descriptor{Size: size}))
		if err != nil {
			return 0, err
		}
		defer w.Close()
		if err := content.Copy(nctx, w, f, size, ""); err != nil {
			return 0, err
		}
		elapsed := time.Since(start)
		dgst := w.Digest()
		return elapsed, removeBlob(nctx, h, dgst)
	})
	if err != nil {
		return result{}, err
	}
	ratio := float64(ref) / float64(berth) // throughput relative to the reference
	return result{berth: berth, reference: ref, refName: "sha256sum + cp", ratio: ratio,
		target: ">= 0.80x", ok: ratio >= 0.8, note: "(throughput)"}, nil
}

func removeBlob(ctx context.Context, h *harness, dgst digest.Digest) error {
	// Background GC may have collected the unreferenced blob already.
	if err := h.content.Delete(ctx, dgst); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing %s: %w", dgst, err)
	}
	return nil
}

func writeRandomFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
