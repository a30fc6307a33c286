// Package local is the on-disk content store: verified, immutable blobs under
// blobs/sha256/<hex> and resumable ingests under ingest/<key>/. It keeps no
// namespaces and no labels; the metadata package adds those on top.
package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/filters"
	"github.com/berth-engine/berth/services/content"
)

// bufferSize is the size of the buffers used to hash and copy data: large
// enough that system calls and hash setup are noise next to the work.
const bufferSize = 1 << 20

// Store is a content store in one directory.
type Store struct {
	root string

	// mu guards active, the refs that have an open writer in this process.
	// Other processes are kept out by an flock on the ingest's lock file.
	mu     sync.Mutex
	active map[string]struct{}

	buffers sync.Pool // *[]byte of bufferSize
}

var _ content.Store = (*Store)(nil)

// NewStore opens the content store at root, creating its directories.
func NewStore(root string) (*Store, error) {
	for _, dir := range []struct {
		path string
		mode os.FileMode
	}{
		{filepath.Join(root, "blobs", "sha256"), 0o755},
		{filepath.Join(root, "ingest"), 0o700},
	} {
		if err := os.MkdirAll(dir.path, dir.mode); err != nil {
			return nil, fmt.Errorf("creating content store directory: %w", err)
		}
	}
	s := &Store{root: root, active: map[string]struct{}{}}
	s.buffers.New = func() any {
		b := make([]byte, bufferSize)
		return &b
	}
	return s, nil
}

func (s *Store) getBuffer() *[]byte  { return s.buffers.Get().(*[]byte) }
func (s *Store) putBuffer(b *[]byte) { s.buffers.Put(b) }

func (s *Store) blobsDir() string { return filepath.Join(s.root, "blobs", "sha256") }

func (s *Store) blobPath(dgst digest.Digest) string {
	return filepath.Join(s.blobsDir(), dgst.Encoded())
}

// ingestDir names the ingest of ref by the hash of the ref, so that any ref
// string (slashes, "..", spaces) maps to one safe directory name.
func (s *Store) ingestDir(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(s.root, "ingest", hex.EncodeToString(sum[:]))
}

// validateDigest accepts the digests this store can hold: sha256 only.
func validateDigest(dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("digest %q: %v: %w", dgst, err, errdefs.ErrInvalidArgument)
	}
	if dgst.Algorithm() != digest.SHA256 {
		return fmt.Errorf("digest %s: the content store holds sha256 blobs only: %w", dgst, errdefs.ErrInvalidArgument)
	}
	return nil
}

func blobNotFound(dgst digest.Digest) error {
	return fmt.Errorf("blob %s not found in the content store: %w", dgst, errdefs.ErrNotFound)
}

// Info returns the size and modification time of a blob. Labels are nil:
// they live in the metadata store.
func (s *Store) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	if err := validateDigest(dgst); err != nil {
		return content.Info{}, err
	}
	fi, err := os.Stat(s.blobPath(dgst))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return content.Info{}, blobNotFound(dgst)
		}
		return content.Info{}, fmt.Errorf("blob %s: %w", dgst, err)
	}
	return infoFromFile(dgst, fi), nil
}

func infoFromFile(dgst digest.Digest, fi fs.FileInfo) content.Info {
	return content.Info{
		Digest:    dgst,
		Size:      fi.Size(),
		CreatedAt: fi.ModTime(),
		UpdatedAt: fi.ModTime(),
	}
}

// Update is not supported: this store keeps no labels.
func (s *Store) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	return content.Info{}, fmt.Errorf("updating blob %s: the local content store keeps no labels, update them through the metadata store: %w",
		info.Digest, errdefs.ErrNotImplemented)
}

// Walk calls fn for each blob matching any of filters (fields digest and
// size), in digest order.
func (s *Store) Walk(ctx context.Context, fn content.WalkFunc, fltrs ...string) error {
	filter, err := filters.Parse(fltrs...)
	if err != nil {
		return fmt.Errorf("listing content: %w", err)
	}
	entries, err := os.ReadDir(s.blobsDir())
	if err != nil {
		return fmt.Errorf("listing content: %w", err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		dgst := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		if dgst.Validate() != nil || !e.Type().IsRegular() {
			continue // not a blob: ignore what does not belong here
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while walking
			}
			return fmt.Errorf("listing content: %w", err)
		}
		info := infoFromFile(dgst, fi)
		if !filter.Match(content.InfoAdaptor(info)) {
			continue
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes a blob.
func (s *Store) Delete(ctx context.Context, dgst digest.Digest) error {
	if err := validateDigest(dgst); err != nil {
		return err
	}
	if err := os.Remove(s.blobPath(dgst)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return blobNotFound(dgst)
		}
		return fmt.Errorf("deleting blob %s: %w", dgst, err)
	}
	return nil
}

// ReaderAt opens the blob of desc.Digest.
func (s *Store) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	if err := validateDigest(desc.Digest); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(desc.Digest))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, blobNotFound(desc.Digest)
		}
		return nil, fmt.Errorf("opening blob %s: %w", desc.Digest, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening blob %s: %w", desc.Digest, err)
	}
	return &fileReaderAt{File: f, size: fi.Size()}, nil
}

// fileReaderAt is a blob file; ReadAt and Close come from *os.File.
type fileReaderAt struct {
	*os.File
	size int64
}

func (r *fileReaderAt) Size() int64 { return r.size }
