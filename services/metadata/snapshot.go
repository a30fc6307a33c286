package metadata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	nsctx "github.com/berth-engine/berth/internal/namespaces"
	"github.com/berth-engine/berth/services/leases"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// LabelSnapshotInherited prefixes the snapshot labels that are passed on to
// the backend snapshotter at Prepare, View and Commit (such as
// snapshots.LabelRebase); all other labels live only in the metadata store.
const LabelSnapshotInherited = "berth.snapshot."

// snapshotter is the namespaced view of one backend snapshotter: each
// namespace has its own records, and each record names the backend
// snapshot that holds its files.
type snapshotter struct {
	db      *DB
	name    string
	backend snapshots.Snapshotter
}

var _ snapshots.Snapshotter = (*snapshotter)(nil)

// backendKey is the unique name of a namespace's snapshot in the backend:
// seq comes from the database, so a key used again after a Remove, or the
// same key in two namespaces, gets a backend snapshot of its own.
func backendKey(ns string, seq uint64, key string) string {
	return ns + "/" + strconv.FormatUint(seq, 10) + "/" + key
}

// isBackendKey reports whether a backend snapshot name has the form
// backendKey makes, that is, whether berthd made it; the garbage collector
// leaves every other backend snapshot alone.
func isBackendKey(bkey string) bool {
	ns, rest, ok := strings.Cut(bkey, "/")
	if !ok || ns == "" {
		return false
	}
	seq, key, ok := strings.Cut(rest, "/")
	if !ok || seq == "" || key == "" {
		return false
	}
	_, err := strconv.ParseUint(seq, 10, 64)
	return err == nil
}

func (s *snapshotter) notFound(key, ns string) error {
	return fmt.Errorf("snapshot %q not found in namespace %q on snapshotter %s: %w", key, ns, s.name, errdefs.ErrNotFound)
}

// inheritedLabels returns the labels the backend is given.
func inheritedLabels(labels map[string]string) map[string]string {
	var out map[string]string
	for k, v := range labels {
		if strings.HasPrefix(k, LabelSnapshotInherited) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

func snapshotOpts(opts []snapshots.Opt) (snapshots.Info, error) {
	var base snapshots.Info
	for _, o := range opts {
		if err := o(&base); err != nil {
			return base, err
		}
	}
	return base, validateLabels(base.Labels)
}

// snapshotRecord is what the metadata store keeps of a snapshot.
type snapshotRecord struct {
	bkey   string
	kind   snapshots.Kind
	parent string
}

func readSnapshotRecord(kb *bolt.Bucket) snapshotRecord {
	return snapshotRecord{
		bkey:   string(kb.Get(keyName)),
		kind:   snapshots.ParseKind(string(kb.Get(keyKind))),
		parent: string(kb.Get(keyParent)),
	}
}

func readSnapshotInfo(key string, kb *bolt.Bucket) (snapshots.Info, error) {
	rec := readSnapshotRecord(kb)
	info := snapshots.Info{Kind: rec.kind, Name: key, Parent: rec.parent, Labels: readMap(kb, bucketKeyLabels)}
	var errs [2]error
	info.Created, errs[0] = readTime(kb, keyCreatedAt)
	info.Updated, errs[1] = readTime(kb, keyUpdatedAt)
	if err := errors.Join(errs[:]...); err != nil {
		return snapshots.Info{}, fmt.Errorf("reading record of snapshot %q: %w", key, err)
	}
	return info, nil
}

// putSnapshotRecord creates the record of key, which must not exist.
func putSnapshotRecord(sbkt *bolt.Bucket, key string, rec snapshotRecord, labels map[string]string, now time.Time) error {
	kb, err := sbkt.CreateBucket([]byte(key))
	if err != nil {
		return err
	}
	for k, v := range map[string]string{string(keyName): rec.bkey, string(keyKind): rec.kind.String(), string(keyParent): rec.parent} {
		if v == "" {
			continue
		}
		if err := kb.Put([]byte(k), []byte(v)); err != nil {
			return err
		}
	}
	if err := writeTimestamps(kb, now, now); err != nil {
		return err
	}
	return writeMap(kb, bucketKeyLabels, labels)
}

// setChild adds (or, with add false, removes) child in the children of the
// record parent; a parent that is gone is no error.
func setChild(sbkt *bolt.Bucket, parent, child string, add bool) error {
	if parent == "" || sbkt == nil {
		return nil
	}
	pb := sbkt.Bucket([]byte(parent))
	if pb == nil {
		return nil
	}
	if !add {
		if cb := pb.Bucket(bucketKeyChildren); cb != nil {
			return cb.Delete([]byte(child))
		}
		return nil
	}
	cb, err := pb.CreateBucketIfNotExists(bucketKeyChildren)
	if err != nil {
		return err
	}
	return cb.Put([]byte(child), nil)
}

// committedParent returns the backend key of parent, which must be a
// committed snapshot of sbkt.
func (s *snapshotter) committedParent(sbkt *bolt.Bucket, ns, parent string) (string, error) {
	var pb *bolt.Bucket
	if sbkt != nil {
		pb = sbkt.Bucket([]byte(parent))
	}
	if pb == nil {
		return "", fmt.Errorf("parent snapshot %q not found in namespace %q on snapshotter %s: %w", parent, ns, s.name, errdefs.ErrNotFound)
	}
	if rec := readSnapshotRecord(pb); rec.kind != snapshots.KindCommitted {
		return "", fmt.Errorf("parent snapshot %q in namespace %q is %s, not committed: only committed snapshots can be parents: %w",
			parent, ns, rec.kind, errdefs.ErrInvalidArgument)
	}
	return string(pb.Get(keyName)), nil
}

// record reads the record of key in ns.
func (s *snapshotter) record(ns, key string) (snapshotRecord, error) {
	var rec snapshotRecord
	err := s.db.bdb.View(func(tx *bolt.Tx) error {
		kb := snapshotBucket(tx, ns, s.name, key)
		if kb == nil {
			return s.notFound(key, ns)
		}
		rec = readSnapshotRecord(kb)
		return nil
	})
	return rec, err
}

func (s *snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return snapshots.Info{}, err
	}
	var info snapshots.Info
	err = s.db.bdb.View(func(tx *bolt.Tx) error {
		kb := snapshotBucket(tx, ns, s.name, key)
		if kb == nil {
			return s.notFound(key, ns)
		}
		info, err = readSnapshotInfo(key, kb)
		return err
	})
	return info, err
}

// Update changes the labels of the record info.Name: "labels" replaces
// them all, "labels.KEY" sets or (with no value in info) removes one; no
// fieldpaths replaces them all. The backend keeps the labels it was given
// when the snapshot was made.
func (s *snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return snapshots.Info{}, err
	}
	if info.Name == "" {
		return snapshots.Info{}, fmt.Errorf("updating a snapshot needs its name: %w", errdefs.ErrInvalidArgument)
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	var updated snapshots.Info
	var old map[string]string
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		kb := snapshotBucket(tx, ns, s.name, info.Name)
		if kb == nil {
			return s.notFound(info.Name, ns)
		}
		if updated, err = readSnapshotInfo(info.Name, kb); err != nil {
			return err
		}
		old = copyMap(updated.Labels)
		for _, fp := range fieldpaths {
			var ok bool
			if updated.Labels, ok = applyLabelPaths(updated.Labels, info.Labels, "labels", fp); !ok {
				return fmt.Errorf("updating snapshot %q: cannot update field %q: only \"labels\" and \"labels.KEY\" can change: %w",
					info.Name, fp, errdefs.ErrInvalidArgument)
			}
		}
		if err := validateLabels(updated.Labels); err != nil {
			return fmt.Errorf("updating snapshot %q: %w", info.Name, err)
		}
		updated.Labels = copyMap(updated.Labels)
		updated.Updated = time.Now().UTC()
		if err := writeTime(kb, keyUpdatedAt, updated.Updated); err != nil {
			return err
		}
		return writeMap(kb, bucketKeyLabels, updated.Labels)
	})
	if err != nil {
		return snapshots.Info{}, err
	}
	if gcLabelsDropped(old, updated.Labels) {
		// It, or what it referred to, may have lost what kept it.
		s.db.scheduleGC()
	}
	return updated, nil
}

// gcLabelsDropped reports whether a garbage collection label of old is
// missing from, or changed in, updated.
func gcLabelsDropped(old, updated map[string]string) bool {
	for k, v := range old {
		if strings.HasPrefix(k, labelGCPrefix) && updated[k] != v {
			return true
		}
	}
	return false
}

// Usage asks the backend about the snapshot's backend key.
func (s *snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return snapshots.Usage{}, err
	}
	rec, err := s.record(ns, key)
	if err != nil {
		return snapshots.Usage{}, err
	}
	u, err := s.backend.Usage(ctx, rec.bkey)
	if err != nil {
		return snapshots.Usage{}, fmt.Errorf("usage of snapshot %q in namespace %q on snapshotter %s: %w", key, ns, s.name, err)
	}
	return u, nil
}

func (s *snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	rec, err := s.record(ns, key)
	if err != nil {
		return nil, err
	}
	if rec.kind == snapshots.KindCommitted {
		return nil, fmt.Errorf("snapshot %q in namespace %q is committed and has no mounts: prepare or view a snapshot on top of it: %w",
			key, ns, errdefs.ErrFailedPrecondition)
	}
	mounts, err := s.backend.Mounts(ctx, rec.bkey)
	if err != nil {
		return nil, fmt.Errorf("mounts of snapshot %q in namespace %q on snapshotter %s: %w", key, ns, s.name, err)
	}
	return mounts, nil
}

func (s *snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindActive, key, parent, opts)
}

func (s *snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.create(ctx, snapshots.KindView, key, parent, opts)
}

// create makes an active snapshot or a view: it records key first, so that
// nobody else can take it, then asks the backend, and removes the record
// again when the backend fails.
func (s *snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	verb := map[snapshots.Kind]string{snapshots.KindActive: "preparing", snapshots.KindView: "viewing"}[kind]
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, fmt.Errorf("%s a snapshot needs a key: %w", verb, errdefs.ErrInvalidArgument)
	}
	base, err := snapshotOpts(opts)
	if err != nil {
		return nil, fmt.Errorf("%s snapshot %q: %w", verb, key, err)
	}
	lease, leased := leases.FromContext(ctx)

	// Held until the backend agrees with the record, so that the collector
	// never sees one without the other.
	s.db.wlock.RLock()
	defer s.db.wlock.RUnlock()

	rec := snapshotRecord{kind: kind, parent: parent}
	var bparent string
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		if _, err := createNamespace(tx, ns); err != nil {
			return err
		}
		sbkt, err := createBucketIfNotExists(tx, nsPath(ns, bucketKeySnapshots, []byte(s.name))...)
		if err != nil {
			return err
		}
		if sbkt.Bucket([]byte(key)) != nil {
			return fmt.Errorf("snapshot %q already exists in namespace %q on snapshotter %s: %w", key, ns, s.name, errdefs.ErrAlreadyExists)
		}
		if parent != "" {
			if bparent, err = s.committedParent(sbkt, ns, parent); err != nil {
				return err
			}
			if err := setChild(sbkt, parent, key, true); err != nil {
				return err
			}
		}
		seq, err := tx.Bucket(bucketKeyVersion).NextSequence()
		if err != nil {
			return err
		}
		rec.bkey = backendKey(ns, seq, key)
		if err := putSnapshotRecord(sbkt, key, rec, base.Labels, time.Now()); err != nil {
			return err
		}
		if leased {
			return addLeaseResourceAt(tx, ns, lease, snapshotLeasePath(s.name), key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s snapshot %q: %w", verb, key, err)
	}

	bopts := []snapshots.Opt{snapshots.WithLabels(inheritedLabels(base.Labels))}
	var mounts []mount.Mount
	if kind == snapshots.KindView {
		mounts, err = s.backend.View(ctx, rec.bkey, bparent, bopts...)
	} else {
		mounts, err = s.backend.Prepare(ctx, rec.bkey, bparent, bopts...)
	}
	if err != nil {
		if uerr := s.dropRecord(ns, key, rec, lease, leased); uerr != nil {
			slog.WarnContext(ctx, "removing the record of a snapshot the backend did not make", "snapshotter", s.name,
				"namespace", ns, "key", key, "error", uerr)
		}
		return nil, fmt.Errorf("%s snapshot %q in namespace %q on snapshotter %s: %w", verb, key, ns, s.name, err)
	}
	return mounts, nil
}

// dropRecord undoes the record of key made for the backend key rec.bkey:
// it leaves alone a record that has been replaced meanwhile.
func (s *snapshotter) dropRecord(ns, key string, rec snapshotRecord, lease string, leased bool) error {
	return s.db.bdb.Update(func(tx *bolt.Tx) error {
		sbkt := snapshotsBucket(tx, ns, s.name)
		if sbkt == nil {
			return nil
		}
		kb := sbkt.Bucket([]byte(key))
		if kb == nil || string(kb.Get(keyName)) != rec.bkey {
			return nil
		}
		if err := sbkt.DeleteBucket([]byte(key)); err != nil {
			return err
		}
		if err := setChild(sbkt, rec.parent, key, false); err != nil {
			return err
		}
		if leased {
			if err := deleteLeaseResourceAt(tx, ns, lease, snapshotLeasePath(s.name), key); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
		return nil
	})
}

// Commit records name, asks the backend to commit, then drops the record
// of key; when the backend fails, the record of name goes again and key
// stays as it was.
func (s *snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	if name == "" || key == "" {
		return fmt.Errorf("committing a snapshot needs a name and the key of an active snapshot: %w", errdefs.ErrInvalidArgument)
	}
	base, err := snapshotOpts(opts)
	if err != nil {
		return fmt.Errorf("committing snapshot %q as %q: %w", key, name, err)
	}
	lease, leased := leases.FromContext(ctx)

	s.db.wlock.RLock()
	defer s.db.wlock.RUnlock()

	var active, committed snapshotRecord
	var bparent string
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		sbkt := snapshotsBucket(tx, ns, s.name)
		var kb *bolt.Bucket
		if sbkt != nil {
			kb = sbkt.Bucket([]byte(key))
		}
		if kb == nil {
			return s.notFound(key, ns)
		}
		active = readSnapshotRecord(kb)
		if active.kind != snapshots.KindActive {
			return fmt.Errorf("snapshot %q in namespace %q is a %s snapshot; only active snapshots can be committed: %w",
				key, ns, active.kind, errdefs.ErrFailedPrecondition)
		}
		if sbkt.Bucket([]byte(name)) != nil {
			return fmt.Errorf("snapshot %q already exists in namespace %q on snapshotter %s: %w", name, ns, s.name, errdefs.ErrAlreadyExists)
		}
		committed = snapshotRecord{kind: snapshots.KindCommitted, parent: active.parent}
		if base.Parent != "" {
			if base.Parent == key || base.Parent == name {
				return fmt.Errorf("snapshot %q cannot be committed onto itself: %w", key, errdefs.ErrInvalidArgument)
			}
			if bparent, err = s.committedParent(sbkt, ns, base.Parent); err != nil {
				return err
			}
			committed.parent = base.Parent
		}
		if err := setChild(sbkt, committed.parent, name, true); err != nil {
			return err
		}
		seq, err := tx.Bucket(bucketKeyVersion).NextSequence()
		if err != nil {
			return err
		}
		committed.bkey = backendKey(ns, seq, name)
		if err := putSnapshotRecord(sbkt, name, committed, base.Labels, time.Now()); err != nil {
			return err
		}
		if leased {
			return addLeaseResourceAt(tx, ns, lease, snapshotLeasePath(s.name), name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("committing snapshot %q as %q: %w", key, name, err)
	}

	bopts := []snapshots.Opt{snapshots.WithLabels(inheritedLabels(base.Labels))}
	if base.Parent != "" {
		bopts = append(bopts, snapshots.WithParent(bparent))
	}
	if err := s.backend.Commit(ctx, committed.bkey, active.bkey, bopts...); err != nil {
		if uerr := s.dropRecord(ns, name, committed, lease, leased); uerr != nil {
			slog.WarnContext(ctx, "removing the record of a snapshot the backend did not commit", "snapshotter", s.name,
				"namespace", ns, "name", name, "error", uerr)
		}
		return fmt.Errorf("committing snapshot %q as %q in namespace %q on snapshotter %s: %w", key, name, ns, s.name, err)
	}
	if err := s.dropRecord(ns, key, active, lease, leased); err != nil {
		return fmt.Errorf("snapshot %q was committed as %q in namespace %q, but its active record could not be removed: %w", key, name, ns, err)
	}
	return nil
}

// Remove deletes the record, then the backend snapshot, and schedules a
// collection. When the backend fails, the snapshot is gone for the
// namespace all the same and the collector removes it from the backend.
func (s *snapshotter) Remove(ctx context.Context, key string) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	lease, leased := leases.FromContext(ctx)

	s.db.wlock.RLock()
	defer s.db.wlock.RUnlock()

	var rec snapshotRecord
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		sbkt := snapshotsBucket(tx, ns, s.name)
		var kb *bolt.Bucket
		if sbkt != nil {
			kb = sbkt.Bucket([]byte(key))
		}
		if kb == nil {
			return s.notFound(key, ns)
		}
		if cb := kb.Bucket(bucketKeyChildren); cb != nil {
			n := 0
			_ = cb.ForEach(func([]byte, []byte) error { n++; return nil })
			if n > 0 {
				first, _ := cb.Cursor().First()
				return fmt.Errorf("snapshot %q in namespace %q has %d children (%q among them): remove them first: %w",
					key, ns, n, first, errdefs.ErrFailedPrecondition)
			}
		}
		rec = readSnapshotRecord(kb)
		if err := sbkt.DeleteBucket([]byte(key)); err != nil {
			return err
		}
		if err := setChild(sbkt, rec.parent, key, false); err != nil {
			return err
		}
		if leased {
			if err := deleteLeaseResourceAt(tx, ns, lease, snapshotLeasePath(s.name), key); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.backend.Remove(ctx, rec.bkey); err != nil && !errdefs.IsNotFound(err) {
		slog.WarnContext(ctx, "removing a snapshot from its backend failed: the garbage collector will retry",
			"snapshotter", s.name, "namespace", ns, "key", key, "backend_key", rec.bkey, "error", err)
	}
	// What it referred to (its parent, labelled references) may be free
	// now, and a failed backend Remove is retried.
	s.db.scheduleGC()
	return nil
}

// Walk calls fn, outside any transaction, for each of the namespace's
// snapshots that matches the filters (fields name, parent, kind,
// labels.KEY).
func (s *snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, fs ...string) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	infos, err := readMatching(s.db.bdb, fs, func(tx *bolt.Tx) *bolt.Bucket { return snapshotsBucket(tx, ns, s.name) },
		readSnapshotInfo, snapshots.InfoAdaptor)
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup asks the backend to remove what none of its snapshots owns.
func (s *snapshotter) Cleanup(ctx context.Context) error {
	if err := s.backend.Cleanup(ctx); err != nil {
		return fmt.Errorf("cleanup of snapshotter %s: %w", s.name, err)
	}
	return nil
}

func (s *snapshotter) Capabilities(ctx context.Context) ([]string, error) {
	return s.backend.Capabilities(ctx)
}

// Close does nothing: the backend belongs to whoever gave it to NewDB.
func (s *snapshotter) Close() error { return nil }
