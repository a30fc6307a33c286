package dirs

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

func TestOrphansSparesCallsInProgress(t *testing.T) {
	root := t.TempDir()
	d, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	inProgress, done, err := d.Temp()
	if err != nil {
		t.Fatal(err)
	}
	placed, donePlaced, err := d.Temp()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Place(placed, "5"); err != nil {
		t.Fatal(err)
	}
	donePlaced() // must not remove what Place moved
	for _, name := range []string{"7", "new-1-old", "rm-3-x"} {
		if err := os.MkdirAll(filepath.Join(root, name, "fs"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	trash, err := d.Orphans(map[string]string{"5": "owned"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteAll(context.Background(), trash); err != nil {
		t.Fatal(err)
	}
	want := []string{"5", filepath.Base(inProgress)}
	sort.Strings(want)
	if got := list(t, root); !reflect.DeepEqual(got, want) {
		t.Fatalf("after removing orphans: %v, want %v", got, want)
	}
	done()
	if got := list(t, root); !reflect.DeepEqual(got, []string{"5"}) {
		t.Fatalf("after the call ended: %v", got)
	}
}

func TestTrashRestoreDelete(t *testing.T) {
	root := t.TempDir()
	d, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "3", "fs"), 0o755); err != nil {
		t.Fatal(err)
	}
	trash, err := d.Trash("3")
	if err != nil || trash == "" {
		t.Fatalf("Trash: %q, %v", trash, err)
	}
	// Cleanup meanwhile leaves a trashed folder to its call.
	if orphans, err := d.Orphans(nil); err != nil || len(orphans) != 0 {
		t.Fatalf("Orphans took a folder a call is trashing: %v, %v", orphans, err)
	}
	if err := d.Restore(trash, "3"); err != nil {
		t.Fatal(err)
	}
	if got := list(t, root); !reflect.DeepEqual(got, []string{"3"}) {
		t.Fatalf("after Restore: %v", got)
	}
	if trash, err = d.Trash("3"); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(trash); err != nil {
		t.Fatal(err)
	}
	if got := list(t, root); len(got) != 0 {
		t.Fatalf("after Delete: %v", got)
	}
	if trash, err := d.Trash("missing"); err != nil || trash != "" {
		t.Fatalf("Trash of a missing folder: %q, %v", trash, err)
	}
}

func TestUsageCountsHardLinksOnce(t *testing.T) {
	dir := t.TempDir()
	empty, err := Usage(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	const size = 256 << 10
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "f"), filepath.Join(dir, "g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "s")); err != nil {
		t.Fatal(err)
	}
	u, err := Usage(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if u.Inodes-empty.Inodes != 2 {
		t.Errorf("inodes grew by %d for a file with two links and a symlink, want 2", u.Inodes-empty.Inodes)
	}
	if grown := u.Size - empty.Size; grown < size || grown >= 2*size {
		t.Errorf("size grew by %d for one %d-byte file with two links", grown, size)
	}
}

func list(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}
