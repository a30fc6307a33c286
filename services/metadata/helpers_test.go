package metadata

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/berth-engine/berth/internal/errdefs"
	nsctx "github.com/berth-engine/berth/internal/namespaces"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/content/local"
)

type event struct {
	namespace string
	topic     string
	msg       proto.Message
}

// fakePublisher records what is published.
type fakePublisher struct {
	mu     sync.Mutex
	events []event
}

func (p *fakePublisher) Publish(ctx context.Context, topic string, msg proto.Message) error {
	ns, _ := nsctx.Namespace(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, event{namespace: ns, topic: topic, msg: msg})
	return nil
}

// take returns the events published since the last call.
func (p *fakePublisher) take() []event {
	p.mu.Lock()
	defer p.mu.Unlock()
	evs := p.events
	p.events = nil
	return evs
}

type testEnv struct {
	db      *DB
	bdb     *bolt.DB
	backing *local.Store
	pub     *fakePublisher
}

// newTestEnv opens a DB over a fresh bbolt file and local store. Background
// collection waits an hour unless opts say otherwise, so that tests decide
// when GC runs.
func newTestEnv(t *testing.T, opts ...Opt) *testEnv {
	t.Helper()
	dir := t.TempDir()
	bdb, err := bolt.Open(filepath.Join(dir, "metadata.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	backing, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	pub := &fakePublisher{}
	db := NewDB(bdb, backing, pub, append([]Opt{WithGCDelay(time.Hour)}, opts...)...)
	t.Cleanup(func() {
		db.Close()
		bdb.Close()
	})
	if err := db.Init(context.Background()); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return &testEnv{db: db, bdb: bdb, backing: backing, pub: pub}
}

func nsCtx(ns string) context.Context {
	return nsctx.WithNamespace(context.Background(), ns)
}

// blob is test data with its descriptor.
type blob struct {
	data []byte
	desc ocispec.Descriptor
}

func newBlob(mediaType string, data string) blob {
	b := []byte(data)
	return blob{data: b, desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}}
}

// write writes b through cs, as an importer would.
func (b blob) write(t *testing.T, ctx context.Context, cs content.Store, labels map[string]string) {
	t.Helper()
	if err := content.WriteBlob(ctx, cs, "write-"+b.desc.Digest.String(), bytes.NewReader(b.data), b.desc, content.WithLabels(labels)); err != nil {
		t.Fatalf("writing blob %s: %v", b.desc.Digest, err)
	}
}

func (e *testEnv) backingHas(t *testing.T, dgst digest.Digest) bool {
	t.Helper()
	_, err := e.backing.Info(context.Background(), dgst)
	if err != nil && !errdefs.IsNotFound(err) {
		t.Fatalf("backing Info %s: %v", dgst, err)
	}
	return err == nil
}

func (e *testEnv) gc(t *testing.T) GCStats {
	t.Helper()
	stats, err := e.db.GarbageCollect(context.Background())
	if err != nil {
		t.Fatalf("GarbageCollect: %v", err)
	}
	return stats
}

func wantKind(t *testing.T, err error, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("got error %v, want kind %q", err, kind)
	}
}
