package metadata

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/events"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/leases"
	"github.com/berth-engine/berth/services/namespaces"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

const (
	// schemaName is the top-level bucket; a layout that old code cannot read
	// gets a new name.
	schemaName = "v1"
	// dbVersion is the migration level within the schema. Raise it and add
	// a migration when the layout changes in a way old data must follow.
	dbVersion = 1

	defaultGCDelay      = 100 * time.Millisecond
	defaultIngestExpiry = 24 * time.Hour
)

// migration brings a database from version-1 to version, inside Init's
// transaction.
type migration struct {
	version int
	name    string
	migrate func(tx *bolt.Tx) error
}

// migrations run in order for every version above the recorded one. Version
// 1 is the first layout, so there is none yet.
var migrations = []migration{}

// Opt configures a DB.
type Opt func(*DB)

// WithGCDelay sets how long the background garbage collector waits after a
// delete before it runs, so that a burst of deletes costs one collection.
func WithGCDelay(d time.Duration) Opt {
	return func(db *DB) { db.gcDelay = d }
}

// WithIngestExpiry sets how long an ingest no lease holds may stay idle
// before the garbage collector aborts it.
func WithIngestExpiry(d time.Duration) Opt {
	return func(db *DB) { db.ingestExpiry = d }
}

// WithSnapshotters gives the backend snapshotters by name; the DB keeps
// each namespace's records of their snapshots (see Snapshotter). The
// backends are not closed by the DB.
func WithSnapshotters(backends map[string]snapshots.Snapshotter) Opt {
	return func(db *DB) {
		for name, b := range backends {
			db.snapshotters[name] = &snapshotter{db: db, name: name, backend: b}
		}
	}
}

// DB is the metadata store.
type DB struct {
	bdb          *bolt.DB
	cs           content.Store
	snapshotters map[string]*snapshotter
	pub          events.Publisher
	gcDelay      time.Duration
	ingestExpiry time.Duration

	// wlock orders blob writes against garbage collection: writers hold it
	// shared from the moment they touch the backing store until their record
	// is in the database, the collector holds it exclusively from its sweep
	// until the backing store is swept, so it never deletes a blob whose
	// record is on its way.
	wlock sync.RWMutex
	// gcMu lets one collection run at a time.
	gcMu sync.Mutex

	gcTrigger chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	cancelGC  context.CancelFunc
	gcCtx     context.Context
}

// NewDB returns a metadata store over bdb that keeps blobs in cs, the raw
// un-namespaced content store, and announces changes on pub (which may be
// nil). Call Init before use and Close when done.
func NewDB(bdb *bolt.DB, cs content.Store, pub events.Publisher, opts ...Opt) *DB {
	db := &DB{
		bdb:          bdb,
		cs:           cs,
		pub:          pub,
		gcDelay:      defaultGCDelay,
		ingestExpiry: defaultIngestExpiry,
		snapshotters: map[string]*snapshotter{},
		gcTrigger:    make(chan struct{}, 1),
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	for _, o := range opts {
		o(db)
	}
	db.gcCtx, db.cancelGC = context.WithCancel(context.Background())
	go db.gcLoop()
	return db
}

// Init creates the buckets and records the schema version, migrating an
// older database. It refuses a database written by a newer berthd.
func (db *DB) Init(ctx context.Context) error {
	return db.bdb.Update(func(tx *bolt.Tx) error {
		if err := refuseUnknownSchemas(tx); err != nil {
			return err
		}
		bkt, err := tx.CreateBucketIfNotExists(bucketKeyVersion)
		if err != nil {
			return fmt.Errorf("creating schema bucket %q: %w", schemaName, err)
		}
		current := 0
		if v := bkt.Get(keyDBVersion); v != nil {
			if current, err = strconv.Atoi(string(v)); err != nil {
				return fmt.Errorf("metadata schema %s records version %q, which is not a number: the database is damaged: %w",
					schemaName, v, errdefs.ErrFailedPrecondition)
			}
		} else {
			// A fresh database starts at the current layout.
			current = dbVersion
		}
		if current > dbVersion {
			return fmt.Errorf("metadata database has schema %s version %d, newer than the version %d this berthd understands: run a newer berthd or use another --root: %w",
				schemaName, current, dbVersion, errdefs.ErrFailedPrecondition)
		}
		for _, m := range migrations {
			if m.version <= current {
				continue
			}
			slog.InfoContext(ctx, "migrating metadata", "schema", schemaName, "from", current, "to", m.version, "migration", m.name)
			if err := m.migrate(tx); err != nil {
				return fmt.Errorf("migrating metadata schema %s to version %d (%s): %w", schemaName, m.version, m.name, err)
			}
			current = m.version
		}
		return bkt.Put(keyDBVersion, []byte(strconv.Itoa(dbVersion)))
	})
}

// refuseUnknownSchemas fails when the database holds a top-level bucket for
// a schema other than ours, which only a newer berthd can have written.
func refuseUnknownSchemas(tx *bolt.Tx) error {
	return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		if string(name) == schemaName {
			return nil
		}
		return fmt.Errorf("metadata database holds schema %q, which this berthd (schema %s) does not understand: run a newer berthd or use another --root: %w",
			name, schemaName, errdefs.ErrFailedPrecondition)
	})
}

// SchemaVersion returns the schema and migration level this store writes,
// e.g. "v1.1".
func (db *DB) SchemaVersion() string {
	return fmt.Sprintf("%s.%d", schemaName, dbVersion)
}

// Close stops the background garbage collector, waiting for a running
// collection to end. It does not close the bbolt database.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.cancelGC()
		close(db.stop)
		<-db.done
	})
	return nil
}

// ContentStore returns the namespaced content store.
func (db *DB) ContentStore() content.Store { return &contentStore{db: db} }

// Images returns the image store.
func (db *DB) Images() images.Store { return &imageStore{db: db} }

// Containers returns the container store.
func (db *DB) Containers() containers.Store { return &containerStore{db: db} }

// Leases returns the lease manager.
func (db *DB) Leases() leases.Manager { return &leaseManager{db: db} }

// Snapshotter returns the namespaced view of the backend snapshotter name
// given with WithSnapshotters, or nil when there is none by that name.
func (db *DB) Snapshotter(name string) snapshots.Snapshotter {
	if sn, ok := db.snapshotters[name]; ok {
		return sn
	}
	return nil
}

// Namespaces returns the namespace store.
func (db *DB) Namespaces() namespaces.Store { return &namespaceStore{db: db} }

// publish sends an event when there is a publisher; a failure to publish
// does not undo the change, so it is only logged.
func (db *DB) publish(ctx context.Context, topic string, ev proto.Message) {
	if db.pub == nil {
		return
	}
	if err := db.pub.Publish(ctx, topic, ev); err != nil {
		slog.WarnContext(ctx, "publishing event", "topic", topic, "error", err)
	}
}

// scheduleGC asks the background collector to run soon.
func (db *DB) scheduleGC() {
	select {
	case db.gcTrigger <- struct{}{}:
	default: // one is pending already
	}
}

// gcLoop runs a collection gcDelay after the first request that arrives
// while none is pending; requests during the delay join that collection.
func (db *DB) gcLoop() {
	defer close(db.done)
	for {
		select {
		case <-db.stop:
			return
		case <-db.gcTrigger:
		}
		t := time.NewTimer(db.gcDelay)
		select {
		case <-db.stop:
			t.Stop()
			return
		case <-t.C:
		}
		// Requests made during the delay are covered by this collection.
		select {
		case <-db.gcTrigger:
		default:
		}
		stats, err := db.GarbageCollect(db.gcCtx)
		if err != nil {
			if db.gcCtx.Err() == nil {
				slog.Warn("background garbage collection", "error", err)
			}
			continue
		}
		slog.Debug("background garbage collection", "content", stats.ContentDeleted, "blobs", stats.BlobsDeleted,
			"leases", stats.LeasesDeleted, "ingests", stats.IngestsAborted, "snapshot_records", stats.SnapshotsDeleted,
			"snapshots", stats.SnapshotsRemoved, "duration", stats.Duration)
	}
}
