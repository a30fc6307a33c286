package storage

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

func newStore(t *testing.T) *MetaStore {
	t.Helper()
	ms, err := NewMetaStore(filepath.Join(t.TempDir(), "metadata.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	return ms
}

func update(t *testing.T, ms *MetaStore, fn func(*Tx) error) {
	t.Helper()
	if err := ms.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

// chain makes committed snapshots c1 <- c2 <- ... <- cN and returns their ids.
func chain(t *testing.T, ms *MetaStore, n int) []string {
	t.Helper()
	var ids []string
	update(t, ms, func(tx *Tx) error {
		parent := ""
		for i := 1; i <= n; i++ {
			key, name := "active-"+itoa(i), "c"+itoa(i)
			if _, err := tx.Create(snapshots.KindActive, key, parent); err != nil {
				return err
			}
			s, err := tx.Commit(key, name)
			if err != nil {
				return err
			}
			ids = append(ids, s.ID)
			parent = name
		}
		return nil
	})
	return ids
}

func itoa(i int) string { return string(rune('0' + i)) }

func TestCreateGetCommit(t *testing.T) {
	ms := newStore(t)
	ids := chain(t, ms, 3)
	if len(ids) != 3 || ids[0] == ids[1] || ids[1] == ids[2] {
		t.Fatalf("ids %v are not distinct", ids)
	}
	var active Snapshot
	update(t, ms, func(tx *Tx) (err error) {
		active, err = tx.Create(snapshots.KindActive, "work", "c3", snapshots.WithLabels(map[string]string{"a": "1"}))
		return err
	})
	if want := []string{ids[2], ids[1], ids[0]}; !reflect.DeepEqual(active.ParentIDs, want) {
		t.Fatalf("parent ids %v, want nearest first %v", active.ParentIDs, want)
	}
	err := ms.View(context.Background(), func(tx *Tx) error {
		s, err := tx.Get("work")
		if err != nil {
			return err
		}
		if s.ID != active.ID || !reflect.DeepEqual(s.ParentIDs, active.ParentIDs) || s.Info.Kind != snapshots.KindActive ||
			s.Info.Parent != "c3" || s.Info.Labels["a"] != "1" || s.Info.Created.IsZero() {
			t.Errorf("Get returned %+v, Create %+v", s, active)
		}
		id, info, err := tx.Stat("c1")
		if err != nil {
			return err
		}
		if id != ids[0] || info.Kind != snapshots.KindCommitted || info.Parent != "" || info.Name != "c1" {
			t.Errorf("Stat(c1) = %s %+v", id, info)
		}
		if _, _, err := tx.Stat("active-1"); !errdefs.IsNotFound(err) {
			t.Errorf("the active key is still there after Commit: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCreateRefusals(t *testing.T) {
	ms := newStore(t)
	chain(t, ms, 1)
	update(t, ms, func(tx *Tx) error {
		_, err := tx.Create(snapshots.KindActive, "a", "")
		return err
	})
	for _, tc := range []struct {
		kind        snapshots.Kind
		key, parent string
		labels      map[string]string
		is          func(error) bool
	}{
		{snapshots.KindActive, "", "", nil, errdefs.IsInvalidArgument},
		{snapshots.KindCommitted, "x", "", nil, errdefs.IsInvalidArgument},
		{snapshots.KindActive, "a", "", nil, errdefs.IsAlreadyExists},
		{snapshots.KindView, "c1", "", nil, errdefs.IsAlreadyExists},
		{snapshots.KindActive, "x", "missing", nil, errdefs.IsNotFound},
		{snapshots.KindActive, "x", "a", nil, errdefs.IsInvalidArgument},
		{snapshots.KindActive, "x", "", map[string]string{"": "v"}, errdefs.IsInvalidArgument},
		{snapshots.KindActive, "x", "", map[string]string{"k": strings.Repeat("v", maxLabelSize)}, errdefs.IsInvalidArgument},
	} {
		err := ms.Update(context.Background(), func(tx *Tx) error {
			_, err := tx.Create(tc.kind, tc.key, tc.parent, snapshots.WithLabels(tc.labels))
			return err
		})
		if !tc.is(err) {
			t.Errorf("Create(%s, %q, %q, %v): unexpected error %v", tc.kind, tc.key, tc.parent, tc.labels, err)
		}
	}
}

func TestRemoveRefusesParents(t *testing.T) {
	ms := newStore(t)
	chain(t, ms, 2)
	update(t, ms, func(tx *Tx) error {
		if _, err := tx.Create(snapshots.KindView, "v", "c1"); err != nil {
			return err
		}
		_, err := tx.Create(snapshots.KindActive, "a", "c1")
		return err
	})
	err := ms.Update(context.Background(), func(tx *Tx) error {
		_, _, err := tx.Remove("c1")
		return err
	})
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "parent of 3 other snapshots") {
		t.Fatalf("removing a parent of three: %v", err)
	}
	for _, key := range []string{"v", "a", "c2"} {
		update(t, ms, func(tx *Tx) error { _, _, err := tx.Remove(key); return err })
	}
	var removedID string
	update(t, ms, func(tx *Tx) (err error) { removedID, _, err = tx.Remove("c1"); return err })
	if removedID == "" {
		t.Fatal("Remove returned no id")
	}
	err = ms.Update(context.Background(), func(tx *Tx) error { _, _, err := tx.Remove("c1"); return err })
	if !errdefs.IsNotFound(err) {
		t.Fatalf("removing twice: %v", err)
	}
}

func TestCommitRebase(t *testing.T) {
	ms := newStore(t)
	ids := chain(t, ms, 2)
	update(t, ms, func(tx *Tx) error {
		_, err := tx.Create(snapshots.KindActive, "layer", "")
		return err
	})
	// Onto an active snapshot: refused, and nothing changes.
	update(t, ms, func(tx *Tx) error { _, err := tx.Create(snapshots.KindActive, "other", ""); return err })
	err := ms.Update(context.Background(), func(tx *Tx) error {
		_, err := tx.Commit("layer", "top", snapshots.WithParent("other"))
		return err
	})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("rebasing onto an active snapshot: %v", err)
	}
	var s Snapshot
	update(t, ms, func(tx *Tx) (err error) {
		s, err = tx.Commit("layer", "top", snapshots.WithParent("c2"), snapshots.WithLabels(map[string]string{"l": "v"}))
		return err
	})
	if s.Info.Parent != "c2" || !reflect.DeepEqual(s.ParentIDs, []string{ids[1], ids[0]}) || s.Info.Labels["l"] != "v" {
		t.Fatalf("rebased snapshot %+v", s)
	}
	// c2 now has a child.
	err = ms.Update(context.Background(), func(tx *Tx) error { _, _, err := tx.Remove("c2"); return err })
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("removing the new parent: %v", err)
	}
}

func TestCommitRefusals(t *testing.T) {
	ms := newStore(t)
	chain(t, ms, 1)
	update(t, ms, func(tx *Tx) error {
		if _, err := tx.Create(snapshots.KindView, "v", "c1"); err != nil {
			return err
		}
		_, err := tx.Create(snapshots.KindActive, "a", "c1")
		return err
	})
	for _, tc := range []struct {
		key, name string
		is        func(error) bool
	}{
		{"a", "", errdefs.IsInvalidArgument},
		{"missing", "n", errdefs.IsNotFound},
		{"v", "n", errdefs.IsFailedPrecondition},
		{"c1", "n", errdefs.IsFailedPrecondition},
		{"a", "c1", errdefs.IsAlreadyExists},
		{"a", "v", errdefs.IsAlreadyExists},
	} {
		err := ms.Update(context.Background(), func(tx *Tx) error { _, err := tx.Commit(tc.key, tc.name); return err })
		if !tc.is(err) {
			t.Errorf("Commit(%q, %q): unexpected error %v", tc.name, tc.key, err)
		}
	}
}

func TestUpdateLabels(t *testing.T) {
	ms := newStore(t)
	update(t, ms, func(tx *Tx) error {
		_, err := tx.Create(snapshots.KindActive, "a", "", snapshots.WithLabels(map[string]string{"keep": "1", "drop": "2", "change": "3"}))
		return err
	})
	var created snapshots.Info
	_ = ms.View(context.Background(), func(tx *Tx) (err error) { _, created, err = tx.Stat("a"); return err })
	var got snapshots.Info
	update(t, ms, func(tx *Tx) (err error) {
		got, err = tx.Update(snapshots.Info{Name: "a", Labels: map[string]string{"change": "new", "add": "x", "keep": "ignored"}},
			"labels.change", "labels.drop", "labels.add")
		return err
	})
	if want := map[string]string{"keep": "1", "change": "new", "add": "x"}; !reflect.DeepEqual(got.Labels, want) {
		t.Fatalf("labels %v, want %v", got.Labels, want)
	}
	if !got.Created.Equal(created.Created) || !got.Updated.After(created.Updated) {
		t.Fatalf("times: created %v -> %v, updated %v -> %v", created.Created, got.Created, created.Updated, got.Updated)
	}
	update(t, ms, func(tx *Tx) (err error) {
		got, err = tx.Update(snapshots.Info{Name: "a", Labels: map[string]string{"only": "this"}})
		return err
	})
	if want := map[string]string{"only": "this"}; !reflect.DeepEqual(got.Labels, want) {
		t.Fatalf("replacing labels gave %v", got.Labels)
	}
	for _, tc := range []struct {
		info  snapshots.Info
		paths []string
		is    func(error) bool
	}{
		{snapshots.Info{Name: "missing"}, nil, errdefs.IsNotFound},
		{snapshots.Info{Name: "a", Parent: "x"}, []string{"parent"}, errdefs.IsInvalidArgument},
	} {
		err := ms.Update(context.Background(), func(tx *Tx) error { _, err := tx.Update(tc.info, tc.paths...); return err })
		if !tc.is(err) {
			t.Errorf("Update(%+v, %v): unexpected error %v", tc.info, tc.paths, err)
		}
	}
}

func TestWalkFilters(t *testing.T) {
	ms := newStore(t)
	chain(t, ms, 2)
	update(t, ms, func(tx *Tx) error {
		if _, err := tx.Create(snapshots.KindView, "v", "c2", snapshots.WithLabels(map[string]string{"berth.io/x.y": "1"})); err != nil {
			return err
		}
		_, err := tx.Create(snapshots.KindActive, "a", "c1", snapshots.WithLabels(map[string]string{"app": "web"}))
		return err
	})
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"a", "c1", "c2", "v"}},
		{[]string{"kind==committed"}, []string{"c1", "c2"}},
		{[]string{"parent==c1"}, []string{"a", "c2"}},
		{[]string{"name==v", "labels.app==web"}, []string{"a", "v"}},
		{[]string{`labels."berth.io/x.y"`}, []string{"v"}},
		{[]string{"labels.berth.io/x.y==1"}, []string{"v"}},
		{[]string{"kind==active,parent==c2"}, nil},
		{[]string{"name~=^c"}, []string{"c1", "c2"}},
	} {
		var got []string
		err := ms.View(context.Background(), func(tx *Tx) error {
			return tx.Walk(func(info snapshots.Info) error { got = append(got, info.Name); return nil }, tc.filters...)
		})
		if err != nil {
			t.Fatalf("Walk(%q): %v", tc.filters, err)
		}
		sort.Strings(got)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Walk(%q) = %v, want %v", tc.filters, got, tc.want)
		}
	}
	err := ms.View(context.Background(), func(tx *Tx) error {
		return tx.Walk(func(snapshots.Info) error { return nil }, "name==")
	})
	if err != nil {
		t.Fatalf("an empty value is a valid filter: %v", err)
	}
	err = ms.View(context.Background(), func(tx *Tx) error {
		return tx.Walk(func(snapshots.Info) error { return nil }, "name~=(")
	})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad filter: %v", err)
	}
	stop := errors.New("stop")
	n := 0
	err = ms.View(context.Background(), func(tx *Tx) error {
		return tx.Walk(func(snapshots.Info) error { n++; return stop })
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("fn's error must end Walk: %v after %d", err, n)
	}
}

func TestPersistsAndRollsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metadata.db")
	ms, err := NewMetaStore(path)
	if err != nil {
		t.Fatal(err)
	}
	chain(t, ms, 1)
	boom := errors.New("boom")
	err = ms.Update(context.Background(), func(tx *Tx) error {
		if _, err := tx.Create(snapshots.KindActive, "lost", "c1"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if err := ms.Close(); err != nil {
		t.Fatal(err)
	}
	ms = newStoreAt(t, path)
	ids := map[string]string{}
	_ = ms.View(context.Background(), func(tx *Tx) (err error) { ids, err = tx.IDs(); return err })
	if len(ids) != 1 {
		t.Fatalf("after reopening: %v, want only c1", ids)
	}
	for _, key := range ids {
		if key != "c1" {
			t.Fatalf("after reopening: %v, want only c1", ids)
		}
	}
	// A child index entry of the rolled-back create would block removal.
	update(t, ms, func(tx *Tx) error { _, _, err := tx.Remove("c1"); return err })
}

func newStoreAt(t *testing.T, path string) *MetaStore {
	ms, err := NewMetaStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	return ms
}
