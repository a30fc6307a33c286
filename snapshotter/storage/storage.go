// Package storage keeps the records of one snapshotter's snapshots in a
// bbolt database: for each key or name, a short numeric id (the name of the
// snapshot's folder on disk), its kind, parent, labels and times. Every call
// of a snapshotter is one transaction (MetaStore.View or MetaStore.Update),
// so a crash leaves each record as it was before or after the call.
package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/filters"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

var (
	// bucketSchema is the top-level bucket; a layout that old code cannot
	// read gets a new name.
	bucketSchema = []byte("v1")
	// bucketSnapshots maps a key or name to its JSON record; its sequence
	// hands out the ids.
	bucketSnapshots = []byte("snapshots")
	// bucketChildren indexes the children of each committed snapshot:
	// the parent's id (8 bytes, big endian) followed by the child's key.
	bucketChildren = []byte("children")
)

const (
	// openTimeout bounds the wait for bbolt's lock on the database, held
	// by another process using the same root.
	openTimeout = 5 * time.Second
	// maxLabelSize bounds a label's key and value together.
	maxLabelSize = 4096
)

// MetaStore is the metadata database of one snapshotter.
type MetaStore struct {
	db   *bolt.DB
	path string
}

// NewMetaStore opens (creating if needed) the database at path.
func NewMetaStore(path string) (*MetaStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the folder of snapshot metadata %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("opening snapshot metadata %s: another process holds it open: stop it or choose another root: %w", path, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("opening snapshot metadata %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		schema, err := tx.CreateBucketIfNotExists(bucketSchema)
		if err != nil {
			return err
		}
		for _, name := range [][]byte{bucketSnapshots, bucketChildren} {
			if _, err := schema.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising snapshot metadata %s: %w", path, err)
	}
	return &MetaStore{db: db, path: path}, nil
}

// Close closes the database.
func (ms *MetaStore) Close() error {
	if err := ms.db.Close(); err != nil {
		return fmt.Errorf("closing snapshot metadata %s: %w", ms.path, err)
	}
	return nil
}

// View runs fn in a read-only transaction.
func (ms *MetaStore) View(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return ms.db.View(func(btx *bolt.Tx) error { return fn(newTx(btx)) })
}

// Update runs fn in a read-write transaction, committed when fn returns nil.
// Work that must happen together with the change (renaming a snapshot's
// folder into place) belongs in fn: the transaction is rolled back when it
// fails.
func (ms *MetaStore) Update(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return ms.db.Update(func(btx *bolt.Tx) error { return fn(newTx(btx)) })
}

// Stat returns the id and metadata of key, in a transaction of its own.
func (ms *MetaStore) Stat(ctx context.Context, key string) (id string, info snapshots.Info, err error) {
	err = ms.View(ctx, func(tx *Tx) (err error) {
		id, info, err = tx.Stat(key)
		return err
	})
	return id, info, err
}

// UpdateInfo changes the labels of info.Name, in a transaction of its own.
func (ms *MetaStore) UpdateInfo(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	err := ms.Update(ctx, func(tx *Tx) (err error) {
		info, err = tx.Update(info, fieldpaths...)
		return err
	})
	return info, err
}

// Mountable returns the active snapshot or view key, with its parents'
// ids; a committed snapshot has no mounts of its own and is refused.
func (ms *MetaStore) Mountable(ctx context.Context, key string) (Snapshot, error) {
	var s Snapshot
	err := ms.View(ctx, func(tx *Tx) (err error) {
		s, err = tx.Get(key)
		return err
	})
	if err != nil {
		return Snapshot{}, err
	}
	if s.Info.Kind == snapshots.KindCommitted {
		return Snapshot{}, fmt.Errorf("snapshot %q is committed and has no mounts: make a view of it ('berth snapshot view KEY %s'): %w",
			key, key, errdefs.ErrFailedPrecondition)
	}
	return s, nil
}

// Walk calls fn for each snapshot that matches any of filters. It reads the
// records first and calls fn after the transaction, so fn may call the
// snapshotter.
func (ms *MetaStore) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	var infos []snapshots.Info
	err := ms.View(ctx, func(tx *Tx) error {
		return tx.Walk(func(info snapshots.Info) error {
			infos = append(infos, info)
			return nil
		}, filters...)
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// Tx is a transaction on the records.
type Tx struct {
	snapshots *bolt.Bucket
	children  *bolt.Bucket
	now       time.Time
}

func newTx(btx *bolt.Tx) *Tx {
	schema := btx.Bucket(bucketSchema)
	return &Tx{
		snapshots: schema.Bucket(bucketSnapshots),
		children:  schema.Bucket(bucketChildren),
		now:       time.Now().UTC(),
	}
}

// Snapshot is what a snapshotter needs to find a snapshot on disk.
type Snapshot struct {
	// ID is the snapshot's short numeric id: the name of its folder.
	ID string
	// ParentIDs are the ids of its committed parents, nearest first.
	ParentIDs []string
	Info      snapshots.Info
}

// record is the stored form of a snapshot; its key is the bucket key.
type record struct {
	ID      uint64            `json:"id"`
	Kind    string            `json:"kind"`
	Parent  string            `json:"parent,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
}

func (r *record) info(name string) snapshots.Info {
	return snapshots.Info{
		Kind:    snapshots.ParseKind(r.Kind),
		Name:    name,
		Parent:  r.Parent,
		Labels:  r.Labels,
		Created: r.Created,
		Updated: r.Updated,
	}
}

func (r *record) id() string { return strconv.FormatUint(r.ID, 10) }

// get reads the record of key; ErrNotFound when there is none.
func (tx *Tx) get(key string) (*record, error) {
	v := tx.snapshots.Get([]byte(key))
	if v == nil {
		return nil, fmt.Errorf("snapshot %q not found: %w", key, errdefs.ErrNotFound)
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("reading the record of snapshot %q: %w", key, err)
	}
	return &r, nil
}

func (tx *Tx) put(key string, r *record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding the record of snapshot %q: %w", key, err)
	}
	if err := tx.snapshots.Put([]byte(key), v); err != nil {
		return fmt.Errorf("writing the record of snapshot %q: %w", key, err)
	}
	return nil
}

// childKey is the children index entry of child under the parent with id.
func childKey(parentID uint64, child string) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(child)), parentID)
	return append(k, child...)
}

// countChildren counts the snapshots whose parent has id.
func (tx *Tx) countChildren(id uint64) int {
	prefix := binary.BigEndian.AppendUint64(nil, id)
	n := 0
	c := tx.children.Cursor()
	for k, _ := c.Seek(prefix); bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}

// Stat returns the id and metadata of key.
func (tx *Tx) Stat(key string) (string, snapshots.Info, error) {
	r, err := tx.get(key)
	if err != nil {
		return "", snapshots.Info{}, err
	}
	return r.id(), r.info(key), nil
}

// Get returns key with the ids of its parents.
func (tx *Tx) Get(key string) (Snapshot, error) {
	r, err := tx.get(key)
	if err != nil {
		return Snapshot{}, err
	}
	parents, err := tx.parentIDs(r.Parent)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: %w", key, err)
	}
	return Snapshot{ID: r.id(), ParentIDs: parents, Info: r.info(key)}, nil
}

// parentIDs returns the ids of parent and its ancestors, nearest first.
func (tx *Tx) parentIDs(parent string) ([]string, error) {
	var ids []string
	for parent != "" {
		r, err := tx.get(parent)
		if err != nil {
			return nil, fmt.Errorf("reading its parents: %w", err)
		}
		ids = append(ids, r.id())
		parent = r.Parent
	}
	return ids, nil
}

// Create records a new active snapshot or view key on top of the committed
// parent ("" for none) with a fresh id.
func (tx *Tx) Create(kind snapshots.Kind, key, parent string, opts ...snapshots.Opt) (Snapshot, error) {
	if kind != snapshots.KindActive && kind != snapshots.KindView {
		return Snapshot{}, fmt.Errorf("creating snapshot %q: kind %s cannot be created, only active snapshots and views: %w", key, kind, errdefs.ErrInvalidArgument)
	}
	if key == "" {
		return Snapshot{}, fmt.Errorf("creating a snapshot: the key is empty: %w", errdefs.ErrInvalidArgument)
	}
	var base snapshots.Info
	for _, opt := range opts {
		if err := opt(&base); err != nil {
			return Snapshot{}, fmt.Errorf("creating snapshot %q: %w", key, err)
		}
	}
	if err := validateLabels(base.Labels); err != nil {
		return Snapshot{}, fmt.Errorf("creating snapshot %q: %w", key, err)
	}
	if tx.snapshots.Get([]byte(key)) != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q already exists: choose another key or remove it first: %w", key, errdefs.ErrAlreadyExists)
	}
	var parentIDs []string
	var parentID uint64
	if parent != "" {
		p, err := tx.committed(parent, key)
		if err != nil {
			return Snapshot{}, err
		}
		parentID = p.ID
		if parentIDs, err = tx.parentIDs(parent); err != nil {
			return Snapshot{}, fmt.Errorf("creating snapshot %q: %w", key, err)
		}
	}
	id, err := tx.snapshots.NextSequence()
	if err != nil {
		return Snapshot{}, fmt.Errorf("creating snapshot %q: allocating an id: %w", key, err)
	}
	r := &record{ID: id, Kind: kind.String(), Parent: parent, Labels: base.Labels, Created: tx.now, Updated: tx.now}
	if err := tx.put(key, r); err != nil {
		return Snapshot{}, err
	}
	if parent != "" {
		if err := tx.children.Put(childKey(parentID, key), nil); err != nil {
			return Snapshot{}, fmt.Errorf("creating snapshot %q: indexing it under its parent: %w", key, err)
		}
	}
	return Snapshot{ID: r.id(), ParentIDs: parentIDs, Info: r.info(key)}, nil
}

// committed returns the record of parent, which child wants as its parent,
// checking that it is committed.
func (tx *Tx) committed(parent, child string) (*record, error) {
	p, err := tx.get(parent)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("parent snapshot %q of %q not found: %w", parent, child, errdefs.ErrNotFound)
		}
		return nil, err
	}
	if kind := snapshots.ParseKind(p.Kind); kind != snapshots.KindCommitted {
		return nil, fmt.Errorf("snapshot %q cannot be the parent of %q: it is a %s snapshot, and only committed ones can be parents: commit it first: %w",
			parent, child, kind, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// Commit turns the active snapshot key into the committed snapshot name,
// which keeps its id (and so its folder). The labels of name are those
// opts give. When opts give a parent other than key's, name is re-parented
// onto it (a snapshotter checks that it can rebase first).
func (tx *Tx) Commit(key, name string, opts ...snapshots.Opt) (Snapshot, error) {
	if name == "" {
		return Snapshot{}, fmt.Errorf("committing snapshot %q: the name is empty: %w", key, errdefs.ErrInvalidArgument)
	}
	r, err := tx.get(key)
	if err != nil {
		return Snapshot{}, err
	}
	if kind := snapshots.ParseKind(r.Kind); kind != snapshots.KindActive {
		return Snapshot{}, fmt.Errorf("snapshot %q is a %s snapshot, and only active ones can be committed: %w", key, kind, errdefs.ErrFailedPrecondition)
	}
	base := snapshots.Info{Parent: r.Parent}
	for _, opt := range opts {
		if err := opt(&base); err != nil {
			return Snapshot{}, fmt.Errorf("committing snapshot %q: %w", key, err)
		}
	}
	if err := validateLabels(base.Labels); err != nil {
		return Snapshot{}, fmt.Errorf("committing snapshot %q: %w", key, err)
	}
	if tx.snapshots.Get([]byte(name)) != nil {
		return Snapshot{}, fmt.Errorf("committing snapshot %q: a snapshot named %q already exists: choose another name: %w", key, name, errdefs.ErrAlreadyExists)
	}
	if r.Parent != "" {
		p, err := tx.get(r.Parent)
		if err != nil {
			return Snapshot{}, fmt.Errorf("committing snapshot %q: %w", key, err)
		}
		if err := tx.children.Delete(childKey(p.ID, key)); err != nil {
			return Snapshot{}, fmt.Errorf("committing snapshot %q: %w", key, err)
		}
	}
	var parentIDs []string
	if base.Parent != "" {
		p, err := tx.committed(base.Parent, name)
		if err != nil {
			return Snapshot{}, fmt.Errorf("committing snapshot %q: %w", key, err)
		}
		if err := tx.children.Put(childKey(p.ID, name), nil); err != nil {
			return Snapshot{}, fmt.Errorf("committing snapshot %q: indexing it under its parent: %w", key, err)
		}
		if parentIDs, err = tx.parentIDs(base.Parent); err != nil {
			return Snapshot{}, fmt.Errorf("committing snapshot %q: %w", key, err)
		}
	}
	if err := tx.snapshots.Delete([]byte(key)); err != nil {
		return Snapshot{}, fmt.Errorf("committing snapshot %q: %w", key, err)
	}
	c := &record{ID: r.ID, Kind: snapshots.KindCommitted.String(), Parent: base.Parent, Labels: base.Labels, Created: tx.now, Updated: tx.now}
	if err := tx.put(name, c); err != nil {
		return Snapshot{}, err
	}
	return Snapshot{ID: c.id(), ParentIDs: parentIDs, Info: c.info(name)}, nil
}

// Remove forgets key and returns its id and kind. A committed snapshot that
// is still the parent of others is refused with ErrFailedPrecondition.
func (tx *Tx) Remove(key string) (string, snapshots.Kind, error) {
	r, err := tx.get(key)
	if err != nil {
		return "", snapshots.KindUnknown, err
	}
	kind := snapshots.ParseKind(r.Kind)
	if kind == snapshots.KindCommitted {
		if n := tx.countChildren(r.ID); n > 0 {
			return "", kind, fmt.Errorf("cannot remove snapshot %q: it is the parent of %d other %s: remove them first: %w",
				key, n, plural(n, "snapshot", "snapshots"), errdefs.ErrFailedPrecondition)
		}
	}
	if r.Parent != "" {
		p, err := tx.get(r.Parent)
		if err != nil {
			return "", kind, fmt.Errorf("removing snapshot %q: %w", key, err)
		}
		if err := tx.children.Delete(childKey(p.ID, key)); err != nil {
			return "", kind, fmt.Errorf("removing snapshot %q: %w", key, err)
		}
	}
	if err := tx.snapshots.Delete([]byte(key)); err != nil {
		return "", kind, fmt.Errorf("removing snapshot %q: %w", key, err)
	}
	return r.id(), kind, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Update changes the labels of info.Name: with no fieldpaths or "labels" it
// replaces them all; "labels.KEY" sets KEY to info's value, or deletes it
// when info has none.
func (tx *Tx) Update(info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	r, err := tx.get(info.Name)
	if err != nil {
		return snapshots.Info{}, err
	}
	labels := r.Labels
	if len(fieldpaths) == 0 {
		labels = info.Labels
	}
	for _, path := range fieldpaths {
		if key, ok := strings.CutPrefix(path, "labels."); ok && key != "" {
			labels = copyLabels(labels)
			if v, ok := info.Labels[key]; ok {
				labels[key] = v
			} else {
				delete(labels, key)
			}
			continue
		}
		if path != "labels" {
			return snapshots.Info{}, fmt.Errorf("updating snapshot %q: field %q cannot be changed, only labels: %w", info.Name, path, errdefs.ErrInvalidArgument)
		}
		labels = info.Labels
	}
	if err := validateLabels(labels); err != nil {
		return snapshots.Info{}, fmt.Errorf("updating snapshot %q: %w", info.Name, err)
	}
	if len(labels) == 0 {
		labels = nil
	}
	r.Labels = labels
	r.Updated = tx.now
	if err := tx.put(info.Name, r); err != nil {
		return snapshots.Info{}, err
	}
	return r.info(info.Name), nil
}

func copyLabels(labels map[string]string) map[string]string {
	c := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		c[k] = v
	}
	return c
}

func validateLabels(labels map[string]string) error {
	for k, v := range labels {
		if k == "" {
			return fmt.Errorf("a label has an empty key: %w", errdefs.ErrInvalidArgument)
		}
		if len(k)+len(v) > maxLabelSize {
			return fmt.Errorf("label %q is %d bytes long, more than the %d allowed: %w", k, len(k)+len(v), maxLabelSize, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// Walk calls fn for each snapshot that matches any of filters (over name,
// parent, kind and labels.KEY).
func (tx *Tx) Walk(fn func(snapshots.Info) error, filterExprs ...string) error {
	filter, err := filters.Parse(filterExprs...)
	if err != nil {
		return fmt.Errorf("listing snapshots: %w", err)
	}
	return tx.snapshots.ForEach(func(k, v []byte) error {
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("reading the record of snapshot %q: %w", k, err)
		}
		info := r.info(string(k))
		if !filter.Match(snapshots.InfoAdaptor(info)) {
			return nil
		}
		return fn(info)
	})
}

// IDs returns the id of every snapshot, mapped to its key or name, so that
// Cleanup can tell which folders a record owns.
func (tx *Tx) IDs() (map[string]string, error) {
	ids := map[string]string{}
	err := tx.snapshots.ForEach(func(k, v []byte) error {
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("reading the record of snapshot %q: %w", k, err)
		}
		ids[r.id()] = string(k)
		return nil
	})
	return ids, err
}
