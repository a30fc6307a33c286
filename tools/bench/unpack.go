package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/images/unpack"
	"github.com/berth-engine/berth/services/leases"
)

// waitSnapshotter waits until berthd's snapshotter answers: berthd may
// serve before its berth-snapshotter child does.
func (h *harness) waitSnapshotter(ctx context.Context) error {
	var err error
	for range 100 {
		if _, err = h.snapshots.Capabilities(h.ctx(ctx)); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("snapshotter %s does not answer: %w", benchSnapshotter, err)
}

// loadNoUnpack makes an image with mkimage and loads it without unpacking;
// it returns the image record.
func (h *harness) loadNoUnpack(ctx context.Context, name string, mkimageArgs ...string) (images.Image, error) {
	archive := filepath.Join(h.dir, "unpack.tar")
	args := append(slices.Clone(mkimageArgs), "-format", "oci", "-name", name, "-o", archive)
	if out, err := exec.Command(filepath.Join(h.bin, "mkimage"), args...).CombinedOutput(); err != nil {
		return images.Image{}, fmt.Errorf("mkimage: %v: %s", err, out)
	}
	defer os.Remove(archive)
	if err := h.berth("load", "--no-unpack", "-q", "-i", archive); err != nil {
		return images.Image{}, err
	}
	return h.images.Get(h.ctx(ctx), "docker.io/"+name)
}

// benchUnpackGzip applies a 100 MB gzip layer through berthd's Diff service
// into a prepared snapshot, and compares it with 'tar -xzf' of the same
// blob into an empty folder.
func benchUnpackGzip(ctx context.Context, h *harness) (result, error) {
	if err := h.waitSnapshotter(ctx); err != nil {
		return result{}, err
	}
	blobPath := filepath.Join(h.dir, "layer.tar.gz")
	files, payload, err := writeBenchLayer(blobPath, 100_000_000)
	if err != nil {
		return result{}, fmt.Errorf("writing the layer: %w", err)
	}
	defer os.Remove(blobPath)
	// The blob is held by a lease while the benchmark runs.
	nctx := h.ctx(ctx)
	lease, err := h.leases.Create(nctx, leases.WithExpiration(time.Hour))
	if err != nil {
		return result{}, err
	}
	defer h.leases.Delete(context.WithoutCancel(nctx), lease, leases.SynchronousDelete())
	lctx := leases.WithLease(nctx, lease.ID)
	layer, err := writeBlobFile(lctx, h, blobPath, ocispec.MediaTypeImageLayerGzip)
	if err != nil {
		return result{}, err
	}

	out := filepath.Join(h.dir, "tar-out")
	ref, err := median(h.runs, func() (time.Duration, error) {
		if err := os.RemoveAll(out); err != nil {
			return 0, err
		}
		if err := os.Mkdir(out, 0o755); err != nil {
			return 0, err
		}
		return timeCommand("tar", "-xzf", blobPath, "-C", out)
	})
	os.RemoveAll(out)
	if err != nil {
		return result{}, err
	}

	berth, err := median(h.runs, func() (time.Duration, error) {
		key := fmt.Sprintf("bench-apply-%d", time.Now().UnixNano())
		mounts, err := h.snapshots.Prepare(lctx, key, "")
		if err != nil {
			return 0, fmt.Errorf("preparing a snapshot: %w", err)
		}
		defer h.snapshots.Remove(context.WithoutCancel(lctx), key)
		start := time.Now()
		_, err = h.diff.Apply(lctx, layer, mounts)
		elapsed := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("applying the layer: %w", err)
		}
		// Check that the files are there, so that the figure is honest.
		u, err := h.snapshots.Usage(lctx, key)
		if err != nil {
			return 0, err
		}
		if u.Size < payload || u.Inodes < int64(files) {
			return 0, fmt.Errorf("the snapshot holds %d bytes in %d inodes after the apply, expected %d bytes in %d files", u.Size, u.Inodes, payload, files)
		}
		return elapsed, nil
	})
	if err != nil {
		return result{}, err
	}
	ratio := float64(ref) / float64(berth) // throughput relative to tar
	return result{berth: berth, reference: ref, refName: "tar -xzf", ratio: ratio,
		target: ">= 0.80x", ok: ratio >= 0.8, note: fmt.Sprintf("(throughput; %d files, %s)", files, humanBytes(payload))}, nil
}

// writeBenchLayer writes, deterministically, a gzip layer of about
// compressed bytes: files of 1 to 64 KiB in 100 folders, their data drawn
// from 16 letters so that it compresses about as source code does. It
// returns the number of files and their total size.
func writeBenchLayer(path string, compressed int64) (files int, payload int64, err error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	counted := &countingWriter{w: f}
	zw := gzip.NewWriter(counted)
	tw := tar.NewWriter(zw)
	rng := rand.New(rand.NewChaCha8([32]byte{'b', 'e', 'r', 't', 'h'}))
	epoch := time.Unix(1704067200, 0)
	buf := make([]byte, 64<<10)
	for d := range 100 {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("dir%03d/", d), Mode: 0o755, ModTime: epoch}); err != nil {
			return 0, 0, err
		}
	}
	for counted.n < compressed {
		size := 1<<10 + rng.IntN(63<<10)
		for i := range buf[:size] {
			buf[i] = 'a' + byte(rng.IntN(16))
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("dir%03d/file%06d", files%100, files), Mode: 0o644, Size: int64(size), ModTime: epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return 0, 0, err
		}
		if _, err := tw.Write(buf[:size]); err != nil {
			return 0, 0, err
		}
		files++
		payload += int64(size)
	}
	if err := tw.Close(); err != nil {
		return 0, 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, 0, err
	}
	return files, payload, f.Close()
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeBlobFile writes the file at path into the content store.
func writeBlobFile(ctx context.Context, h *harness, path, mediaType string) (ocispec.Descriptor, error) {
	f, err := os.Open(path)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer f.Close()
	dgst, err := digest.FromReader(f)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: dgst, Size: size}
	if err := content.WriteBlob(ctx, h.content, "bench-layer-"+dgst.Encoded(), f, desc); err != nil && !errdefs.IsAlreadyExists(err) {
		return ocispec.Descriptor{}, fmt.Errorf("writing the layer into the content store: %w", err)
	}
	return desc, nil
}

func humanBytes(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/1e6) }

// benchSnapshotOps times Prepare, Commit and Remove over berthd's socket
// and reports the slowest median, against one Version round trip.
func benchSnapshotOps(ctx context.Context, h *harness) (result, error) {
	if err := h.waitSnapshotter(ctx); err != nil {
		return result{}, err
	}
	// Under a lease, as any client that makes snapshots works: the garbage
	// collector leaves them alone.
	lease, err := h.leases.Create(h.ctx(ctx), leases.WithExpiration(time.Hour))
	if err != nil {
		return result{}, err
	}
	defer h.leases.Delete(context.WithoutCancel(h.ctx(ctx)), lease, leases.SynchronousDelete())
	nctx := leases.WithLease(h.ctx(ctx), lease.ID)
	const n = 51
	runs := max(h.runs, n)
	// A parent, as a container's snapshot has one.
	base := fmt.Sprintf("bench-base-%d", time.Now().UnixNano())
	if _, err := h.snapshots.Prepare(nctx, base+"-a", ""); err != nil {
		return result{}, err
	}
	if err := h.snapshots.Commit(nctx, base, base+"-a"); err != nil {
		return result{}, err
	}
	defer h.snapshots.Remove(context.WithoutCancel(nctx), base)

	var prepare, commit, remove []time.Duration
	for i := range runs {
		key := fmt.Sprintf("%s-active-%d", base, i)
		name := fmt.Sprintf("%s-committed-%d", base, i)
		start := time.Now()
		if _, err := h.snapshots.Prepare(nctx, key, base); err != nil {
			return result{}, fmt.Errorf("prepare: %w", err)
		}
		prepare = append(prepare, time.Since(start))
		start = time.Now()
		if err := h.snapshots.Commit(nctx, name, key); err != nil {
			return result{}, fmt.Errorf("commit: %w", err)
		}
		commit = append(commit, time.Since(start))
		start = time.Now()
		if err := h.snapshots.Remove(nctx, name); err != nil {
			return result{}, fmt.Errorf("remove: %w", err)
		}
		remove = append(remove, time.Since(start))
	}
	ref, err := median(runs, func() (time.Duration, error) {
		start := time.Now()
		_, err := h.intro.Version(nctx, &emptypb.Empty{})
		return time.Since(start), err
	})
	if err != nil {
		return result{}, err
	}
	mp, mc, mr := medianOf(prepare), medianOf(commit), medianOf(remove)
	worst := max(mp, mc, mr)
	return result{berth: worst, reference: ref, refName: "Version RPC (round trip)", ratio: float64(worst) / float64(ref),
		target: "< 5ms each", ok: worst < 5*time.Millisecond,
		note: fmt.Sprintf("(slowest median; Prepare %s, Commit %s, Remove %s)", round(mp), round(mc), round(mr))}, nil
}

func medianOf(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// benchUnpackParallel unpacks a 5-layer gzip image with its layers applied
// in parallel, and one by one.
func benchUnpackParallel(ctx context.Context, h *harness) (result, error) {
	if err := h.waitSnapshotter(ctx); err != nil {
		return result{}, err
	}
	img, err := h.loadNoUnpack(ctx, "bench/unpack-5:latest", "random", "-layers", "5", "-size", "100000000")
	if err != nil {
		return result{}, err
	}
	timeUnpack := func(parallel bool) (time.Duration, error) {
		// Under a lease that goes at once afterwards, with what it holds.
		lease, err := h.leases.Create(h.ctx(ctx), leases.WithExpiration(time.Hour))
		if err != nil {
			return 0, err
		}
		lctx := leases.WithLease(h.ctx(ctx), lease.ID)
		start := time.Now()
		_, err = unpack.Unpack(lctx, h.content, h.snapshots, h.diff, img, unpack.WithParallel(parallel))
		elapsed := time.Since(start)
		if derr := h.leases.Delete(h.ctx(ctx), lease, leases.SynchronousDelete()); err == nil && derr != nil {
			err = fmt.Errorf("removing the unpacked snapshots: %w", derr)
		}
		return elapsed, err
	}
	seq, err := median(h.runs, func() (time.Duration, error) { return timeUnpack(false) })
	if err != nil {
		return result{}, fmt.Errorf("sequential unpack: %w", err)
	}
	par, err := median(h.runs, func() (time.Duration, error) { return timeUnpack(true) })
	if err != nil {
		return result{}, fmt.Errorf("parallel unpack: %w", err)
	}
	if err := h.berth("rmi", "bench/unpack-5:latest"); err != nil {
		return result{}, err
	}
	ratio := float64(seq) / float64(par) // speed-up
	return result{berth: par, reference: seq, refName: "the same, one by one", ratio: ratio,
		target: "> 1.00x", ok: ratio > 1, note: "(speed-up)"}, nil
}
