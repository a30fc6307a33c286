package metadata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/snapshotter/snapshots"
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
	// SnapshotsDeleted counts snapshot records removed from namespaces.
	SnapshotsDeleted int
	// SnapshotsRemoved counts snapshots removed from backend snapshotters.
	SnapshotsRemoved int
	// MetaDuration is the time spent in the mark-and-sweep transaction.
	MetaDuration time.Duration
	// Duration is the time of the whole collection.
	Duration time.Duration
}

// gcLive is what the metadata sweep leaves for the backends to keep.
type gcLive struct {
	blobs     map[digest.Digest]bool     // blobs some namespace records
	held      map[string]bool            // backing ingest refs a lease holds
	snapshots map[string]map[string]bool // snapshotter -> backend keys some namespace records
}

// GarbageCollect deletes what no root reaches: content and snapshot
// records and expired leases in one transaction, then the blobs and backend
// snapshots no namespace records and the ingests that are idle and held by
// no lease. Only one collection runs at a time; a caller arriving during one
// waits for it and then runs its own.
func (db *DB) GarbageCollect(ctx context.Context) (GCStats, error) {
	db.gcMu.Lock()
	defer db.gcMu.Unlock()
	// Writers commit under the shared lock: none is between its backing
	// commit and its record while the collector decides what is unrecorded.
	db.wlock.Lock()
	defer db.wlock.Unlock()

	start := time.Now()
	var (
		stats GCStats
		live  gcLive
	)
	err := db.bdb.Update(func(tx *bolt.Tx) error {
		stats = GCStats{}
		live = gcLive{blobs: map[digest.Digest]bool{}, held: map[string]bool{}, snapshots: map[string]map[string]bool{}}
		return forEachBucket(tx.Bucket(bucketKeyVersion), func(ns []byte, nb *bolt.Bucket) error {
			return collectNamespace(string(ns), nb, start, &stats, &live)
		})
	})
	stats.MetaDuration = time.Since(start)
	if err != nil {
		return stats, fmt.Errorf("garbage collection of metadata: %w", err)
	}

	var errs []error
	if err := db.sweepBlobs(ctx, live.blobs, &stats); err != nil {
		errs = append(errs, err)
	}
	if err := db.sweepIngests(ctx, live.held, start, &stats); err != nil {
		errs = append(errs, err)
	}
	if err := db.sweepSnapshots(ctx, live.snapshots, &stats); err != nil {
		errs = append(errs, err)
	}
	stats.Duration = time.Since(start)
	return stats, errors.Join(errs...)
}

// gcNode is a content record (snapshotter empty, key a digest) or a
// snapshot record (key in snapshotter) of one namespace.
type gcNode struct {
	snapshotter string
	key         string
}

// gcRefs calls mark for every record the labels refer to.
func gcRefs(labels *bolt.Bucket, mark func(gcNode)) {
	if labels == nil {
		return
	}
	_ = labels.ForEach(func(k, v []byte) error {
		key := string(k)
		switch {
		case strings.HasPrefix(key, LabelGCRefContent):
			if digest.Digest(v).Validate() == nil {
				mark(gcNode{key: string(v)})
			}
		case strings.HasPrefix(key, LabelGCRefSnapshot):
			sn, _, _ := strings.Cut(strings.TrimPrefix(key, LabelGCRefSnapshot), "/")
			if sn != "" {
				mark(gcNode{snapshotter: sn, key: string(v)})
			}
		}
		return nil
	})
}

// collectNamespace marks from the namespace's roots, deletes its expired
// leases and unmarked content and snapshot records, and notes what is left.
func collectNamespace(ns string, nb *bolt.Bucket, now time.Time, stats *GCStats, live *gcLive) error {
	marked := map[gcNode]bool{}
	var queue []gcNode
	mark := func(n gcNode) {
		if n.key != "" && !marked[n] {
			marked[n] = true
			queue = append(queue, n)
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
			_ = rb.ForEach(func(k, _ []byte) error { mark(gcNode{key: string(k)}); return nil })
		}
		if rb := lb.Bucket(bucketKeyIngests); rb != nil {
			_ = rb.ForEach(func(k, _ []byte) error { live.held[backingRef(ns, string(k))] = true; return nil })
		}
		return forEachBucket(lb.Bucket(bucketKeySnapshots), func(sn []byte, rb *bolt.Bucket) error {
			return rb.ForEach(func(k, _ []byte) error { mark(gcNode{snapshotter: string(sn), key: string(k)}); return nil })
		})
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
			mark(gcNode{key: string(tb.Get(keyDigest))})
		}
		return nil
	}); err != nil {
		return err
	}

	// Roots: containers, which keep their root filesystem snapshot and what
	// their gc.ref labels name.
	if err := forEachBucket(nb.Bucket(bucketKeyContainers), func(_ []byte, cb *bolt.Bucket) error {
		if sn, key := cb.Get(keySnapshotter), cb.Get(keySnapshotKey); len(sn) > 0 {
			mark(gcNode{snapshotter: string(sn), key: string(key)})
		}
		gcRefs(cb.Bucket(bucketKeyLabels), mark)
		return nil
	}); err != nil {
		return err
	}

	// Roots: snapshots labelled as such.
	snaps := nb.Bucket(bucketKeySnapshots)
	if err := forEachBucket(snaps, func(sn []byte, sbkt *bolt.Bucket) error {
		return forEachBucket(sbkt, func(key []byte, kb *bolt.Bucket) error {
			if lb := kb.Bucket(bucketKeyLabels); lb != nil && lb.Get([]byte(LabelGCRoot)) != nil {
				mark(gcNode{snapshotter: string(sn), key: string(key)})
			}
			return nil
		})
	}); err != nil {
		return err
	}

	// Edges: gc.ref labels of the records reached, and the parents of the
	// snapshots reached.
	blobs := nestedBucket(nb, bucketKeyContent, bucketKeyBlob)
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if n.snapshotter == "" {
			if bb := nestedBucket(blobs, []byte(n.key)); bb != nil {
				gcRefs(bb.Bucket(bucketKeyLabels), mark)
			}
			continue
		}
		kb := nestedBucket(snaps, []byte(n.snapshotter), []byte(n.key))
		if kb == nil {
			continue
		}
		if p := kb.Get(keyParent); len(p) > 0 {
			mark(gcNode{snapshotter: n.snapshotter, key: string(p)})
		}
		gcRefs(kb.Bucket(bucketKeyLabels), mark)
	}

	// Sweep content records.
	var dead [][]byte
	_ = forEachBucket(blobs, func(k []byte, _ *bolt.Bucket) error {
		if marked[gcNode{key: string(k)}] {
			live.blobs[digest.Digest(k)] = true
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

	// Sweep snapshot records. A marked child marks its parent, so what goes
	// has no child that stays; the parents that stay forget the children
	// that go.
	return forEachBucket(snaps, func(sn []byte, sbkt *bolt.Bucket) error {
		name := string(sn)
		if live.snapshots[name] == nil {
			live.snapshots[name] = map[string]bool{}
		}
		type deadSnapshot struct {
			key    []byte
			parent string
		}
		var dead []deadSnapshot
		_ = forEachBucket(sbkt, func(key []byte, kb *bolt.Bucket) error {
			rec := readSnapshotRecord(kb)
			if marked[gcNode{snapshotter: name, key: string(key)}] {
				live.snapshots[name][rec.bkey] = true
			} else {
				dead = append(dead, deadSnapshot{key: bytes.Clone(key), parent: rec.parent})
			}
			return nil
		})
		for _, d := range dead {
			if err := sbkt.DeleteBucket(d.key); err != nil {
				return fmt.Errorf("deleting record of snapshot %q of snapshotter %s in namespace %q: %w", d.key, name, ns, err)
			}
			stats.SnapshotsDeleted++
		}
		for _, d := range dead {
			if err := setChild(sbkt, d.parent, string(d.key), false); err != nil {
				return err
			}
		}
		return nil
	})
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

// sweepSnapshots removes from each backend the snapshots berthd made that
// no namespace records any more, children before parents. Backend
// snapshots whose names berthd did not make are left alone.
func (db *DB) sweepSnapshots(ctx context.Context, recorded map[string]map[string]bool, stats *GCStats) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(db.snapshotters)) {
		backend := db.snapshotters[name].backend
		parents := map[string]string{}
		var unrecorded []string
		err := backend.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			parents[info.Name] = info.Parent
			if isBackendKey(info.Name) && !recorded[name][info.Name] {
				unrecorded = append(unrecorded, info.Name)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("garbage collection: listing the snapshots of snapshotter %s: %w", name, err))
			continue
		}
		depth := func(bkey string) int {
			d := 0
			for p := parents[bkey]; p != "" && d <= len(parents); p = parents[p] {
				d++
			}
			return d
		}
		sort.SliceStable(unrecorded, func(i, j int) bool { return depth(unrecorded[i]) > depth(unrecorded[j]) })
		for _, bkey := range unrecorded {
			err := backend.Remove(ctx, bkey)
			switch {
			case err == nil:
				stats.SnapshotsRemoved++
			case errdefs.IsNotFound(err):
			case errdefs.IsFailedPrecondition(err):
				// A child berthd did not make keeps it.
				slog.DebugContext(ctx, "garbage collection: snapshot kept by the backend", "snapshotter", name, "snapshot", bkey, "error", err)
			default:
				errs = append(errs, fmt.Errorf("garbage collection: removing snapshot %q from snapshotter %s: %w", bkey, name, err))
			}
		}
	}
	return errors.Join(errs...)
}
