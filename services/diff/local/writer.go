package local

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
)

// layerWriter compresses a layer tar into a content writer, digesting the
// tar (the diff ID) and the blob on the way.
type layerWriter struct {
	diffID digest.Digester
	blob   digest.Digester
	size   *countWriter
	buf    *bufio.Writer
	zw     io.WriteCloser // nil when uncompressed
	tar    io.Writer
}

func newLayerWriter(w io.Writer, c compression) (*layerWriter, error) {
	lw := &layerWriter{
		diffID: digest.Canonical.Digester(),
		blob:   digest.Canonical.Digester(),
		size:   &countWriter{},
	}
	lw.buf = bufio.NewWriterSize(io.MultiWriter(w, lw.blob.Hash(), lw.size), 1<<20)
	switch c {
	case gzipped:
		zw, err := gzip.NewWriterLevel(lw.buf, gzip.DefaultCompression)
		if err != nil {
			return nil, err
		}
		lw.zw = zw
	case zstandard:
		zw, err := zstd.NewWriter(lw.buf)
		if err != nil {
			return nil, err
		}
		lw.zw = zw
	}
	if lw.zw != nil {
		lw.tar = io.MultiWriter(lw.diffID.Hash(), lw.zw)
	} else {
		lw.tar = io.MultiWriter(lw.diffID.Hash(), lw.buf)
	}
	return lw, nil
}

func (lw *layerWriter) Write(p []byte) (int, error) { return lw.tar.Write(p) }

// Close ends the compressed stream and flushes it; the content writer
// stays open.
func (lw *layerWriter) Close() error {
	if lw.zw != nil {
		if err := lw.zw.Close(); err != nil {
			return err
		}
	}
	return lw.buf.Flush()
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// withEmptyDir calls fn with an empty directory, the lower tree of a
// snapshot without parent.
func withEmptyDir(base string, fn func(dir string) error) error {
	if base != "" {
		if err := os.MkdirAll(base, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", base, err)
		}
	}
	dir, err := os.MkdirTemp(base, "berth-empty-")
	if err != nil {
		return fmt.Errorf("creating an empty lower directory: %w", err)
	}
	defer os.Remove(dir)
	return fn(dir)
}
