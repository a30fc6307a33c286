package metadata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
)

// GCStats says what a garbage collection removed and how long it took.
type GCStats struct {
	// ContentDeleted counts content records removed from namespaces.
	ContentDeleted int
	// LeasesDeleted counts expired leases removed.
	LeasesDeleted int
	// BlobsDeleted counts blobs removed from the backing store.
	BlobsDeleted int
	// IngestsAborted counts idle ingests, held by no lease, that were aborted.
	IngestsAborted int
	// MetaDuration is the time spent in the mark-and-sweep transaction.
	MetaDuration time.Duration
	// Duration is the time of the whole collection.
	Duration time.Duration
}

// GarbageCollect deletes what no root reaches: content records and expired
// leases in one transaction, then the blobs no namespace records and the
// ingests that are idle and held by no lease. Only one collection runs at a
// time; a caller arriving during one waits for it and then runs its own.
func (db *DB) GarbageCollect(ctx context.Context) (GCStats, error) {
	db.gcMu.Lock()
	defer db.gcMu.Unlock()
	// Writers commit under the shared lock: none is between its backing
	// commit and its record while the collector decides what is unrecorded.
	db.wlock.Lock()
	defer db.wlock.Unlock()

	start := time.Now()
	var (
		stats    GCStats
		recorded map[digest.Digest]bool // blobs some namespace records
		held     map[string]bool        // backing ingest refs a lease holds
	)
	err := db.bdb.Update(func(tx *bolt.Tx) error {
		stats = GCStats{}
		recorded = map[digest.Digest]bool{}
		held = map[string]bool{}
		return forEachBucket(tx.Bucket(bucketKeyVersion), func(ns []byte, nb *bolt.Bucket) error {
			return collectNamespace(string(ns), nb, start, &stats, recorded, held)
		})
	})
	stats.MetaDuration = time.Since(start)
	if err != nil {
		return stats, fmt.Errorf("garbage collection of metadata: %w", err)
	}

	var errs []error
	if err := db.sweepBlobs(ctx, recorded, &stats); err != nil {
		errs = append(errs, err)
	}
	if err := db.sweepIngests(ctx, held, start, &stats); err != nil {
		errs = append(errs, err)
	}
	stats.Duration = time.Since(start)
	return stats, errors.Join(errs...)
}

// collectNamespace marks from the namespace's roots, deletes its expired
// leases and unmarked content records, and notes what is left.
func collectNamespace(ns string, nb *bolt.Bucket, now time.Time, stats *GCStats, recorded map[digest.Digest]bool, held map[string]bool) error {
	marked := map[string]bool{}
	var queue []string
	mark := func(d string) {
		if d != "" && !marked[d] {
			marked[d] = true
			queue = append(queue, d)
		}
	}

	// Roots: resources of live leases. Expired leases go.
	lsb := nb.Bucket(bucketKeyLeases)
	var expired [][]byte
	if err := forEachBucket(lsb, func(id []byte, lb *bolt.Bucket) error {
		if leaseExpired(lb, now) {
			expired = append(expired, bytes.Clone(id))
			return nil
		}
		if rb := lb.Bucket(bucketKeyContent); rb != nil {
			_ = rb.ForEach(func(k, _ []byte) error { mark(string(k)); return nil })
		}
		if rb := lb.Bucket(bucketKeyIngests); rb != nil {
			_ = rb.ForEach(func(k, _ []byte) error { held[backingRef(ns, string(k))] = true; return nil })
		}
		return nil
	}); err != nil {
		return err
	}
	for _, id := range expired {
		if err := lsb.DeleteBucket(id); err != nil {
			return fmt.Errorf("deleting expired lease %q in namespace %q: %w", id, ns, err)
		}
		stats.LeasesDeleted++
	}

	// Roots: image targets.
	if err := forEachBucket(nb.Bucket(bucketKeyImages), func(_ []byte, ib *bolt.Bucket) error {
		if tb := ib.Bucket(bucketKeyTarget); tb != nil {
			mark(string(tb.Get(keyDigest)))
		}
		return nil
	}); err != nil {
		return err
	}

	// Edges: gc.ref.content labels of the records reached.
	blobs := nestedBucket(nb, bucketKeyContent, bucketKeyBlob)
	prefix := []byte(LabelGCRefContent)
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if blobs == nil {
			continue
		}
		bb := blobs.Bucket([]byte(d))
		if bb == nil {
			continue
		}
		if lb := bb.Bucket(bucketKeyLabels); lb != nil {
			_ = lb.ForEach(func(k, v []byte) error {
				if bytes.HasPrefix(k, prefix) && digest.Digest(v).Validate() == nil {
					mark(string(v))
				}
				return nil
			})
		}
	}

	// Sweep content records.
	var dead [][]byte
	_ = forEachBucket(blobs, func(k []byte, _ *bolt.Bucket) error {
		if marked[string(k)] {
			recorded[digest.Digest(k)] = true
		} else {
			dead = append(dead, bytes.Clone(k))
		}
		return nil
	})
	for _, k := range dead {
		if err := blobs.DeleteBucket(k); err != nil {
			return fmt.Errorf("deleting record of content %s in namespace %q: %w", k, ns, err)
		}
		stats.ContentDeleted++
	}
	return nil
}

// leaseExpired reports whether the lease's expiry label is in the past. A
// label that is not a time (only possible if written by hand) never expires.
func leaseExpired(lb *bolt.Bucket, now time.Time) bool {
	lab := lb.Bucket(bucketKeyLabels)
	if lab == nil {
		return false
	}
	v := lab.Get([]byte(LabelGCExpire))
	if v == nil {
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, string(v))
	return err == nil && now.After(t)
}

func nestedBucket(bkt *bolt.Bucket, path ...[]byte) *bolt.Bucket {
	for _, p := range path {
		if bkt == nil {
			return nil
		}
		bkt = bkt.Bucket(p)
	}
	return bkt
}

// sweepBlobs deletes from the backing store the blobs no namespace records.
func (db *DB) sweepBlobs(ctx context.Context, recorded map[digest.Digest]bool, stats *GCStats) error {
	var unrecorded []digest.Digest
	if err := db.cs.Walk(ctx, func(info content.Info) error {
		if !recorded[info.Digest] {
			unrecorded = append(unrecorded, info.Digest)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("garbage collection: listing blobs: %w", err)
	}
	var errs []error
	for _, d := range unrecorded {
		if err := db.cs.Delete(ctx, d); err != nil {
			if !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("garbage collection: deleting blob %s: %w", d, err))
			}
			continue
		}
		stats.BlobsDeleted++
	}
	return errors.Join(errs...)
}

// sweepIngests aborts the backing ingests that no lease holds and that were
// not written to within the ingest expiry, then drops the ingest records
// whose backing ingest is gone.
func (db *DB) sweepIngests(ctx context.Context, held map[string]bool, now time.Time, stats *GCStats) error {
	statuses, err := db.cs.ListStatuses(ctx)
	if err != nil {
		return fmt.Errorf("garbage collection: listing ingests: %w", err)
	}
	live := map[string]bool{}
	var errs []error
	for _, st := range statuses {
		live[st.Ref] = true
		if held[st.Ref] || now.Sub(lastActive(st)) <= db.ingestExpiry {
			continue
		}
		if err := db.cs.Abort(ctx, st.Ref); err != nil && !errdefs.IsNotFound(err) {
			if !errdefs.IsUnavailable(err) { // else a writer has it open: not stale
				errs = append(errs, fmt.Errorf("garbage collection: aborting ingest %q: %w", st.Ref, err))
			}
			continue
		}
		delete(live, st.Ref)
		stats.IngestsAborted++
	}
	err = db.bdb.Update(func(tx *bolt.Tx) error {
		return forEachBucket(tx.Bucket(bucketKeyVersion), func(ns []byte, nb *bolt.Bucket) error {
			ib := nestedBucket(nb, bucketKeyContent, bucketKeyIngests)
			var gone [][]byte
			_ = forEachBucket(ib, func(ref []byte, _ *bolt.Bucket) error {
				if !live[backingRef(string(ns), string(ref))] {
					gone = append(gone, bytes.Clone(ref))
				}
				return nil
			})
			for _, ref := range gone {
				if err := ib.DeleteBucket(ref); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("garbage collection: removing ingest records: %w", err))
	}
	return errors.Join(errs...)
}

// lastActive is when the ingest was last written to.
func lastActive(st content.Status) time.Time {
	if st.UpdatedAt.IsZero() {
		return st.StartedAt
	}
	return st.UpdatedAt
}
