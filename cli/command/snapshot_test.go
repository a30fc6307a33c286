package command

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

func TestPrintSnapshotTree(t *testing.T) {
	infos := []snapshots.Info{
		{Name: "a"},
		{Name: "a1", Parent: "a"},
		{Name: "a1x", Parent: "a1"},
		{Name: "a2", Parent: "a"},
		{Name: "b"},
		{Name: "orphan", Parent: "gone"},
	}
	var sb strings.Builder
	printSnapshotTree(&sb, infos)
	want := ` a
  \_ a1
    \_ a1x
  \_ a2
 b
 orphan
`
	if sb.String() != want {
		t.Errorf("tree:\n%s\nwant:\n%s", sb.String(), want)
	}
}

func TestPrintMounts(t *testing.T) {
	var sb strings.Builder
	printMounts(&sb, "/mnt/x", []mount.Mount{
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a:/b", "upperdir=/c", "workdir=/d"}},
		{Type: "tmpfs", Source: "tmpfs", Target: "sub"},
	})
	want := "mount -t overlay overlay /mnt/x -o lowerdir=/a:/b,upperdir=/c,workdir=/d\n" +
		"mount -t tmpfs tmpfs /mnt/x/sub\n"
	if sb.String() != want {
		t.Errorf("mounts:\n%s\nwant:\n%s", sb.String(), want)
	}
}

func TestSnapshotInfoJSON(t *testing.T) {
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	var sb strings.Builder
	if err := writeJSONIndent2(&sb, snapshotInfoJSON{Kind: "committed", Name: "n", Parent: "p",
		Labels: map[string]string{"k": "v"}, Created: created, Updated: created}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "\n  \"Kind\": \"committed\",\n") || !strings.Contains(sb.String(), "\n    \"k\": \"v\"\n") {
		t.Errorf("not indented by two spaces a level:\n%s", sb.String())
	}
	var back snapshotInfoJSON
	if err := json.Unmarshal([]byte(sb.String()), &back); err != nil || back.Parent != "p" || !back.Created.Equal(created) {
		t.Errorf("JSON does not read back: %v %+v", err, back)
	}
}

func TestSnapshotLabels(t *testing.T) {
	got, err := snapshotLabels([]string{"a=1", "b=", "c=x=y"})
	if err != nil || got["a"] != "1" || got["b"] != "" || got["c"] != "x=y" || len(got) != 4 {
		t.Errorf("snapshotLabels = %v, %v", got, err)
	}
	if _, err := time.Parse(time.RFC3339, got[labelGCRoot]); err != nil {
		t.Errorf("the garbage collection root label is not a time: %q", got[labelGCRoot])
	}
	if _, err := snapshotLabels([]string{"=v"}); err == nil {
		t.Errorf("a label without a key was accepted")
	}
}
