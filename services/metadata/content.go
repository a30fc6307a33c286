package metadata

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/filters"
	nsctx "github.com/berth-engine/berth/internal/namespaces"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/leases"
)

// contentStore is the namespaced view of the backing store: a namespace sees
// the blobs it has records for and the ingests it started.
type contentStore struct{ db *DB }

var _ content.Store = (*contentStore)(nil)

// backingRef is the name of a namespace's ingest in the backing store.
func backingRef(ns, ref string) string { return ns + "/" + ref }

// splitBackingRef undoes backingRef.
func splitBackingRef(bref string) (ns, ref string, ok bool) {
	ns, ref, ok = strings.Cut(bref, "/")
	return ns, ref, ok && ns != "" && ref != ""
}

func parseDigest(dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("digest %q: %v: %w", dgst, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

func contentNotFound(dgst digest.Digest, ns string) error {
	return fmt.Errorf("content %s not found in namespace %q: %w", dgst, ns, errdefs.ErrNotFound)
}

func (s *contentStore) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return content.Info{}, err
	}
	if err := parseDigest(dgst); err != nil {
		return content.Info{}, err
	}
	var info content.Info
	err = s.db.bdb.View(func(tx *bolt.Tx) error {
		bkt := blobBucket(tx, ns, dgst.String())
		if bkt == nil {
			return contentNotFound(dgst, ns)
		}
		info, err = readContentInfo(dgst, bkt)
		return err
	})
	return info, err
}

// Update changes the labels of a blob's record: "labels" replaces them all,
// "labels.KEY" sets or (with no value in info) removes one; no fieldpaths
// replaces them all.
func (s *contentStore) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return content.Info{}, err
	}
	if err := parseDigest(info.Digest); err != nil {
		return content.Info{}, err
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	var updated content.Info
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		bkt := blobBucket(tx, ns, info.Digest.String())
		if bkt == nil {
			return contentNotFound(info.Digest, ns)
		}
		if updated, err = readContentInfo(info.Digest, bkt); err != nil {
			return err
		}
		for _, fp := range fieldpaths {
			var ok bool
			if updated.Labels, ok = applyLabelPaths(updated.Labels, info.Labels, "labels", fp); !ok {
				return fmt.Errorf("updating content %s: cannot update field %q: only \"labels\" and \"labels.KEY\" can change: %w",
					info.Digest, fp, errdefs.ErrInvalidArgument)
			}
		}
		if err := validateLabels(updated.Labels); err != nil {
			return fmt.Errorf("updating content %s: %w", info.Digest, err)
		}
		updated.Labels = copyMap(updated.Labels)
		updated.UpdatedAt = time.Now().UTC()
		if err := writeTime(bkt, keyUpdatedAt, updated.UpdatedAt); err != nil {
			return err
		}
		return writeMap(bkt, bucketKeyLabels, updated.Labels)
	})
	if err != nil {
		return content.Info{}, err
	}
	return updated, nil
}

// Walk calls fn, outside any transaction, for each recorded blob that
// matches the filters (fields digest, size, labels.KEY).
func (s *contentStore) Walk(ctx context.Context, fn content.WalkFunc, fs ...string) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	readInfo := func(k string, b *bolt.Bucket) (content.Info, error) { return readContentInfo(digest.Digest(k), b) }
	infos, err := readMatching(s.db.bdb, fs, func(tx *bolt.Tx) *bolt.Bucket { return blobsBucket(tx, ns) },
		readInfo, content.InfoAdaptor)
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the namespace's record; the blob itself goes when the
// garbage collector finds no namespace recording it.
func (s *contentStore) Delete(ctx context.Context, dgst digest.Digest) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	if err := parseDigest(dgst); err != nil {
		return err
	}
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		if blobBucket(tx, ns, dgst.String()) == nil {
			return contentNotFound(dgst, ns)
		}
		return blobsBucket(tx, ns).DeleteBucket([]byte(dgst.String()))
	})
	if err != nil {
		return err
	}
	s.db.publish(ctx, "/content/delete", &eventsv1.ContentDelete{Digest: dgst.String()})
	s.db.scheduleGC()
	return nil
}

func (s *contentStore) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if err := parseDigest(desc.Digest); err != nil {
		return nil, err
	}
	err = s.db.bdb.View(func(tx *bolt.Tx) error {
		if blobBucket(tx, ns, desc.Digest.String()) == nil {
			return contentNotFound(desc.Digest, ns)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ra, err := s.db.cs.ReaderAt(ctx, desc)
	if err != nil {
		if errdefs.IsNotFound(err) {
			// Recorded but gone from disk: report it in the namespace's terms.
			return nil, fmt.Errorf("content %s is recorded in namespace %q but missing from the content store: %w", desc.Digest, ns, err)
		}
		return nil, err
	}
	return ra, nil
}

func (s *contentStore) Status(ctx context.Context, ref string) (content.Status, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return content.Status{}, err
	}
	st, err := s.db.cs.Status(ctx, backingRef(ns, ref))
	if err != nil {
		if errdefs.IsNotFound(err) {
			return content.Status{}, fmt.Errorf("ingest %q not found in namespace %q: %w", ref, ns, errdefs.ErrNotFound)
		}
		return content.Status{}, fmt.Errorf("status of ingest %q in namespace %q: %w", ref, ns, err)
	}
	st.Ref = ref
	return st, nil
}

// ListStatuses lists the namespace's ingests matching the filters (fields
// ref, expected, total, offset).
func (s *contentStore) ListStatuses(ctx context.Context, fs ...string) ([]content.Status, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.Parse(fs...)
	if err != nil {
		return nil, err
	}
	all, err := s.db.cs.ListStatuses(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing ingests of namespace %q: %w", ns, err)
	}
	var out []content.Status
	for _, st := range all {
		sns, ref, ok := splitBackingRef(st.Ref)
		if !ok || sns != ns {
			continue
		}
		st.Ref = ref
		if filter.Match(content.StatusAdaptor(st)) {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// Abort discards an ingest and its record.
func (s *contentStore) Abort(ctx context.Context, ref string) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	abortErr := s.db.cs.Abort(ctx, backingRef(ns, ref))
	if abortErr != nil && !errdefs.IsNotFound(abortErr) {
		return fmt.Errorf("aborting ingest %q in namespace %q: %w", ref, ns, abortErr)
	}
	recorded := false
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		bkt := ingestsBucket(tx, ns)
		if bkt == nil || bkt.Bucket([]byte(ref)) == nil {
			return nil
		}
		recorded = true
		return bkt.DeleteBucket([]byte(ref))
	})
	if err != nil {
		return err
	}
	if abortErr != nil && !recorded {
		return fmt.Errorf("ingest %q not found in namespace %q: %w", ref, ns, errdefs.ErrNotFound)
	}
	return nil
}

// Writer opens the namespace's ingest ref. When the expected digest is
// already in the namespace, or in the backing store for another namespace,
// it records the blob here (and in the lease of ctx) and returns
// ErrAlreadyExists instead, so that sharing a blob costs no copy.
func (s *contentStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	var wo content.WriterOpts
	for _, o := range opts {
		if err := o(&wo); err != nil {
			return nil, err
		}
	}
	if wo.Ref == "" {
		return nil, fmt.Errorf("opening a content writer needs an ingest ref: %w", errdefs.ErrInvalidArgument)
	}
	if wo.Desc.Digest != "" {
		if err := parseDigest(wo.Desc.Digest); err != nil {
			return nil, err
		}
	}
	lease, leased := leases.FromContext(ctx)
	if leased {
		// Fail before the backing store makes an ingest nobody would hold.
		if err := s.db.bdb.View(func(tx *bolt.Tx) error {
			if getBucket(tx, nsPath(ns, bucketKeyLeases, []byte(lease))...) == nil {
				return leaseNotFound(lease, ns)
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("opening ingest %q: %w", wo.Ref, err)
		}
	}

	s.db.wlock.RLock()
	defer s.db.wlock.RUnlock()

	var w content.Writer
	for attempt := 0; ; attempt++ {
		if wo.Desc.Digest != "" {
			exists, err := s.recordExisting(ctx, ns, wo.Desc, lease, leased)
			if err != nil || exists {
				return nil, err
			}
		}
		w, err = s.db.cs.Writer(ctx, content.WithRef(backingRef(ns, wo.Ref)), content.WithDescriptor(wo.Desc))
		if err == nil {
			break
		}
		if errdefs.IsAlreadyExists(err) && wo.Desc.Digest != "" && attempt == 0 {
			// Another namespace committed the blob since we looked: record it.
			continue
		}
		return nil, fmt.Errorf("opening ingest %q in namespace %q: %w", wo.Ref, ns, err)
	}
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		if _, err := createNamespace(tx, ns); err != nil {
			return err
		}
		bkt, err := createBucketIfNotExists(tx, nsPath(ns, bucketKeyContent, bucketKeyIngests, []byte(wo.Ref))...)
		if err != nil {
			return err
		}
		if wo.Desc.Digest != "" {
			if err := bkt.Put(keyExpected, []byte(wo.Desc.Digest)); err != nil {
				return err
			}
		}
		if leased {
			if err := bkt.Put(keyLease, []byte(lease)); err != nil {
				return err
			}
			return addLeaseResource(tx, ns, lease, bucketKeyIngests, wo.Ref)
		}
		return nil
	})
	if err != nil {
		// Keep the partial data: the ingest may be a resumed one.
		w.Close()
		return nil, err
	}
	return &namespacedWriter{Writer: w, db: s.db, ns: ns, ref: wo.Ref, lease: lease, leased: leased}, nil
}

// recordExisting records desc in ns when its blob is already there and
// reports whether it did (in which case err is ErrAlreadyExists). The
// caller holds wlock.
func (s *contentStore) recordExisting(ctx context.Context, ns string, desc ocispec.Descriptor, lease string, leased bool) (bool, error) {
	dgst := desc.Digest.String()
	var inNamespace bool
	if err := s.db.bdb.View(func(tx *bolt.Tx) error {
		inNamespace = blobBucket(tx, ns, dgst) != nil
		return nil
	}); err != nil {
		return false, err
	}
	var size int64
	if !inNamespace {
		info, err := s.db.cs.Info(ctx, desc.Digest)
		if errdefs.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("looking up content %s: %w", desc.Digest, err)
		}
		if desc.Size > 0 && desc.Size != info.Size {
			return false, fmt.Errorf("content %s is %d bytes, but the descriptor says %d: fix the descriptor: %w",
				desc.Digest, info.Size, desc.Size, errdefs.ErrInvalidArgument)
		}
		size = info.Size
	}
	created := false
	err := s.db.bdb.Update(func(tx *bolt.Tx) error {
		if blobBucket(tx, ns, dgst) == nil {
			if _, err := createNamespace(tx, ns); err != nil {
				return err
			}
			if err := putBlobRecord(tx, ns, desc.Digest, size, nil); err != nil {
				return err
			}
			created = true
		}
		if leased {
			return addLeaseResource(tx, ns, lease, bucketKeyContent, dgst)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if created {
		s.db.publish(ctx, "/content/create", &eventsv1.ContentCreate{Digest: dgst, Size: size})
	}
	return true, fmt.Errorf("content %s already exists in namespace %q: %w", desc.Digest, ns, errdefs.ErrAlreadyExists)
}

// namespacedWriter writes to the backing ingest and records the blob in its
// namespace on Commit.
type namespacedWriter struct {
	content.Writer
	db     *DB
	ns     string
	ref    string
	lease  string
	leased bool
}

func (w *namespacedWriter) Status() (content.Status, error) {
	st, err := w.Writer.Status()
	st.Ref = w.ref
	return st, err
}

// Commit commits the backing ingest (a blob already there is fine), then
// records the blob in the namespace with its labels. A namespace that had the
// blob already gets ErrAlreadyExists and keeps its labels.
func (w *namespacedWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	var info content.Info
	for _, o := range opts {
		if err := o(&info); err != nil {
			return err
		}
	}
	if err := validateLabels(info.Labels); err != nil {
		return fmt.Errorf("committing ingest %q in namespace %q: %w", w.ref, w.ns, err)
	}

	w.db.wlock.RLock()
	defer w.db.wlock.RUnlock()

	dgst := expected
	if dgst == "" {
		dgst = w.Writer.Digest()
	}
	if err := w.Writer.Commit(ctx, size, expected); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("committing ingest %q in namespace %q: %w", w.ref, w.ns, err)
	}
	backing, err := w.db.cs.Info(ctx, dgst)
	if err != nil {
		return fmt.Errorf("committed ingest %q in namespace %q but cannot find blob %s: %w", w.ref, w.ns, dgst, err)
	}

	exists := false
	err = w.db.bdb.Update(func(tx *bolt.Tx) error {
		if _, err := createNamespace(tx, w.ns); err != nil {
			return err
		}
		if bkt := ingestsBucket(tx, w.ns); bkt != nil && bkt.Bucket([]byte(w.ref)) != nil {
			if err := bkt.DeleteBucket([]byte(w.ref)); err != nil {
				return err
			}
		}
		if w.leased {
			if err := deleteLeaseResource(tx, w.ns, w.lease, bucketKeyIngests, w.ref); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
			if err := addLeaseResource(tx, w.ns, w.lease, bucketKeyContent, dgst.String()); err != nil {
				return err
			}
		}
		if blobBucket(tx, w.ns, dgst.String()) != nil {
			exists = true
			return nil
		}
		return putBlobRecord(tx, w.ns, dgst, backing.Size, info.Labels)
	})
	if err != nil {
		return err
	}
	if exists {
		return fmt.Errorf("content %s already exists in namespace %q: %w", dgst, w.ns, errdefs.ErrAlreadyExists)
	}
	w.db.publish(ctx, "/content/create", &eventsv1.ContentCreate{Digest: dgst.String(), Size: backing.Size})
	return nil
}

// putBlobRecord creates the record of dgst in ns.
func putBlobRecord(tx *bolt.Tx, ns string, dgst digest.Digest, size int64, labels map[string]string) error {
	bkt, err := createBucketIfNotExists(tx, nsPath(ns, bucketKeyContent, bucketKeyBlob, []byte(dgst.String()))...)
	if err != nil {
		return err
	}
	now := time.Now()
	if err := writeTimestamps(bkt, now, now); err != nil {
		return err
	}
	if err := writeInt(bkt, keySize, size); err != nil {
		return err
	}
	return writeMap(bkt, bucketKeyLabels, labels)
}

func readContentInfo(dgst digest.Digest, bkt *bolt.Bucket) (content.Info, error) {
	info := content.Info{Digest: dgst, Labels: readMap(bkt, bucketKeyLabels)}
	var errs [3]error
	info.CreatedAt, errs[0] = readTime(bkt, keyCreatedAt)
	info.UpdatedAt, errs[1] = readTime(bkt, keyUpdatedAt)
	info.Size, errs[2] = readInt(bkt, keySize)
	if err := errors.Join(errs[:]...); err != nil {
		return content.Info{}, fmt.Errorf("reading record of content %s: %w", dgst, err)
	}
	return info, nil
}
