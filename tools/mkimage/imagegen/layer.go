// Package imagegen builds container images for tests and benchmarks,
// deterministically: the same inputs give byte-identical archives, because
// every time stamp is fixed, entries are sorted and owners are root.
package imagegen

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// epochUnix is the time stamped on every file, config and history entry
// (2024-01-01T00:00:00Z).
const epochUnix = 1704067200

// Epoch returns the fixed creation time of every generated image.
func Epoch() time.Time { return time.Unix(epochUnix, 0).UTC() }

// Entry is one file of a layer.
type Entry struct {
	Header tar.Header
	// Content writes the file's data, exactly Header.Size bytes; nil when
	// the entry has no data.
	Content func(w io.Writer) error
}

// Layer is one filesystem change set, written as a tar.
type Layer struct {
	// CreatedBy is the history line of the layer in the image config.
	CreatedBy string
	Entries   []Entry
}

// Dir returns a directory entry; name has no leading slash.
func Dir(name string, mode int64) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}}
}

// File returns a regular file holding data.
func File(name string, mode int64, data []byte) Entry {
	return Entry{
		Header:  tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))},
		Content: func(w io.Writer) error { _, err := w.Write(data); return err },
	}
}

// Symlink returns a symbolic link to target.
func Symlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

// Hardlink returns a hard link to target, a file of this layer written
// earlier or a file of a lower layer.
func Hardlink(name, target string) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

// Fifo returns a named pipe.
func Fifo(name string, mode int64) Entry {
	return Entry{Header: tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: mode}}
}

// Whiteout returns the entry that deletes name from the layers below.
func Whiteout(dir, name string) Entry {
	return File(joinName(dir, ".wh."+name), 0o644, nil)
}

// Opaque returns the entry that hides everything the layers below hold in dir.
func Opaque(dir string) Entry {
	return File(joinName(dir, ".wh..wh..opq"), 0o644, nil)
}

func joinName(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// RandomFile returns a file of size bytes of incompressible data that
// depends only on seed.
func RandomFile(name string, mode int64, size int64, seed string) Entry {
	return Entry{
		Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size},
		Content: func(w io.Writer) error {
			_, err := io.CopyBuffer(w, io.LimitReader(NewRandomReader(seed), size), make([]byte, 1<<20))
			return err
		},
	}
}

// NewRandomReader returns an endless stream of pseudo-random bytes that
// depends only on seed.
func NewRandomReader(seed string) io.Reader {
	return rand.NewChaCha8(sha256.Sum256([]byte(seed)))
}

// HostFile returns a regular file whose data is read from path when the
// layer is written.
func HostFile(name string, mode int64, path string) (Entry, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Entry{}, err
	}
	if !fi.Mode().IsRegular() {
		return Entry{}, fmt.Errorf("%s is not a regular file", path)
	}
	size := fi.Size()
	return Entry{
		Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size},
		Content: func(w io.Writer) error {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			n, err := io.Copy(w, io.LimitReader(f, size))
			if err != nil {
				return err
			}
			if n != size {
				return fmt.Errorf("%s changed size while being read: %d bytes, expected %d", path, n, size)
			}
			return nil
		},
	}, nil
}

// sortEntries orders entries by name, so that a directory precedes what it
// holds, and checks that each hard link names a file written before it.
func (l *Layer) sortEntries() error {
	sort.SliceStable(l.Entries, func(i, j int) bool { return l.Entries[i].Header.Name < l.Entries[j].Header.Name })
	seen := map[string]bool{}
	for _, e := range l.Entries {
		if e.Header.Typeflag == tar.TypeLink && !seen[e.Header.Linkname] {
			// A link to a lower layer's file is fine; callers mark those by
			// naming a file that this layer does not hold at all.
			for _, o := range l.Entries {
				if o.Header.Name == e.Header.Linkname {
					return fmt.Errorf("hard link %s sorts before its target %s: rename one of them", e.Header.Name, e.Header.Linkname)
				}
			}
		}
		seen[e.Header.Name] = true
	}
	return nil
}

// WriteTar writes the layer as an uncompressed tar.
func (l *Layer) WriteTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, e := range l.Entries {
		hdr := e.Header
		hdr.ModTime = Epoch()
		hdr.Uid, hdr.Gid = 0, 0
		hdr.Uname, hdr.Gname = "", ""
		hdr.Format = tar.FormatUSTAR
		if len(hdr.PAXRecords) > 0 {
			hdr.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return fmt.Errorf("writing header of %s: %w", hdr.Name, err)
		}
		if e.Content != nil {
			if err := e.Content(tw); err != nil {
				return fmt.Errorf("writing %s: %w", hdr.Name, err)
			}
		}
	}
	return tw.Close()
}

// writeGzip writes the layer as a gzip-compressed tar. The gzip header
// carries no name or time, so the output depends only on the layer.
func (l *Layer) writeGzip(w io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	if err := l.WriteTar(zw); err != nil {
		return err
	}
	return zw.Close()
}

// layerBlob is a layer with the digests and sizes of its two encodings.
type layerBlob struct {
	layer    *Layer
	diffID   digest.Digest // of the uncompressed tar
	size     int64
	gzDigest digest.Digest
	gzSize   int64
}

// measure writes the layer once, without keeping it, to learn its digests.
func measure(l *Layer, compressed bool) (*layerBlob, error) {
	if err := l.sortEntries(); err != nil {
		return nil, err
	}
	tarDigester := digest.Canonical.Digester()
	tarCount := &countWriter{w: tarDigester.Hash()}
	if !compressed {
		if err := l.WriteTar(tarCount); err != nil {
			return nil, err
		}
		return &layerBlob{layer: l, diffID: tarDigester.Digest(), size: tarCount.n}, nil
	}
	gzDigester := digest.Canonical.Digester()
	gzCount := &countWriter{w: gzDigester.Hash()}
	zw, err := gzip.NewWriterLevel(gzCount, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if err := l.WriteTar(io.MultiWriter(tarCount, zw)); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return &layerBlob{
		layer: l, diffID: tarDigester.Digest(), size: tarCount.n,
		gzDigest: gzDigester.Digest(), gzSize: gzCount.n,
	}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
