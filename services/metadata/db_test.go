package metadata

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content/local"
)

func openBolt(t *testing.T, path string) *bolt.DB {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bdb.Close() })
	return bdb
}

func initDB(t *testing.T, bdb *bolt.DB) error {
	t.Helper()
	cs, err := local.NewStore(filepath.Join(t.TempDir(), "content"))
	if err != nil {
		t.Fatal(err)
	}
	db := NewDB(bdb, cs, nil)
	defer db.Close()
	return db.Init(context.Background())
}

func TestInitRecordsSchemaVersion(t *testing.T) {
	bdb := openBolt(t, filepath.Join(t.TempDir(), "metadata.db"))
	if err := initDB(t, bdb); err != nil {
		t.Fatal(err)
	}
	var recorded string
	bdb.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("v1")); b != nil {
			recorded = string(b.Get([]byte("version")))
		}
		return nil
	})
	if recorded == "" {
		t.Fatal("Init recorded no version under v1/version")
	}
	db := NewDB(bdb, nil, nil)
	defer db.Close()
	if got := db.SchemaVersion(); got != "v1."+recorded {
		t.Errorf("SchemaVersion = %q, recorded version %q", got, recorded)
	}
	// Init is idempotent.
	if err := initDB(t, bdb); err != nil {
		t.Errorf("second Init: %v", err)
	}
}

func TestInitRefusesNewerSchema(t *testing.T) {
	for name, mutate := range map[string]func(tx *bolt.Tx) error{
		"newer version": func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("v1")).Put([]byte("version"), []byte("99"))
		},
		"unknown schema": func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("v2"))
			return err
		},
		"damaged version": func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("v1")).Put([]byte("version"), []byte("one"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			bdb := openBolt(t, filepath.Join(t.TempDir(), "metadata.db"))
			if err := initDB(t, bdb); err != nil {
				t.Fatal(err)
			}
			if err := bdb.Update(mutate); err != nil {
				t.Fatal(err)
			}
			err := initDB(t, bdb)
			wantKind(t, err, errdefs.ErrFailedPrecondition)
			if name == "newer version" && (!strings.Contains(err.Error(), "99") || !strings.Contains(err.Error(), "newer")) {
				t.Errorf("message does not explain: %v", err)
			}
			// The refused database was not changed.
			if name == "newer version" {
				bdb.View(func(tx *bolt.Tx) error {
					if v := string(tx.Bucket([]byte("v1")).Get([]byte("version"))); v != "99" {
						t.Errorf("version rewritten to %q", v)
					}
					return nil
				})
			}
		})
	}
}
