package command_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"

	"github.com/berth-engine/berth/tools/mkimage/imagegen"
)

// TestSnapshotCommands drives every 'berth snapshot' command against the
// native snapshotter; none of them mounts, so any user can run it.
func TestSnapshotCommands(t *testing.T) {
	e := newEnv(t)
	if got := e.ok("snapshot", "prepare", "a"); got != "" {
		t.Errorf("prepare printed %q", got)
	}
	printed := e.ok("snapshot", "prepare", "--target", "/mnt/x", "b")
	if !regexp.MustCompile(`^mount -t bind \S+ /mnt/x -o \S*bind\S*\n$`).MatchString(printed) {
		t.Errorf("prepare --target printed %q", printed)
	}
	if got := e.ok("snapshot", "mounts", "/mnt/x", "b"); got != printed {
		t.Errorf("mounts printed %q, prepare --target %q", got, printed)
	}
	e.ok("snapshot", "commit", "--label", "k=v", "base", "a")
	e.ok("snapshot", "prepare", "child", "base")
	if got := e.ok("snapshot", "view", "--target", "/mnt/y", "v", "base"); !strings.Contains(got, "ro") {
		t.Errorf("view --target printed %q, want a read-only mount", got)
	}

	// Snapshots made by hand are roots of garbage collection: removing an
	// image (which collects garbage before it returns) leaves them.
	e.ok("load", "--no-unpack", "-i", e.writeArchive("gc.tar", imagegen.FormatOCI, imagegen.Named{Image: testImage("gc"), Names: []string{"gc:1"}}))
	e.ok("rmi", "gc:1")

	rows := lines(e.ok("snapshot", "ls"))
	want := []string{`KEY\s+PARENT\s+KIND`, `b\s+active`, `base\s+committed`, `child\s+base\s+active`, `v\s+base\s+view`}
	if len(rows) != len(want) {
		t.Fatalf("snapshot ls: %q", rows)
	}
	for i, w := range want {
		if !regexp.MustCompile(`^` + w + `\s*$`).MatchString(rows[i]) {
			t.Errorf("snapshot ls row %d = %q, want %s", i, rows[i], w)
		}
	}
	if got := e.ok("snapshot", "ls", "-q", "--filter", "kind==committed"); got != "base\n" {
		t.Errorf("ls -q --filter kind==committed = %q", got)
	}
	if got := e.ok("snapshot", "ls", "--format", `{{.Key}}:{{index .LabelMap "k"}}`, "--filter", "name==base"); got != "base:v\n" {
		t.Errorf("ls --format = %q", got)
	}
	if got := e.ok("snapshot", "tree"); got != " b\n base\n  \\_ child\n  \\_ v\n" {
		t.Errorf("tree = %q", got)
	}
	var info struct {
		Kind, Name, Parent string
		Labels             map[string]string
	}
	if err := json.Unmarshal([]byte(e.ok("snapshot", "info", "child")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Kind != "active" || info.Name != "child" || info.Parent != "base" {
		t.Errorf("info child = %+v", info)
	}
	usage := lines(e.ok("snapshot", "usage"))
	if len(usage) != 5 || !regexp.MustCompile(`^KEY\s+SIZE\s+INODES$`).MatchString(strings.TrimSpace(usage[0])) {
		t.Errorf("usage = %q", usage)
	}
	if got := lines(e.ok("snapshot", "usage", "-b", "base")); len(got) != 2 || !regexp.MustCompile(`^base\s+\d+\s+\d+\s*$`).MatchString(got[1]) {
		t.Errorf("usage -b base = %q", got)
	}

	// Namespaces see their own snapshots only.
	if got := e.ok("-n", "other", "snapshot", "ls", "-q"); got != "" {
		t.Errorf("another namespace lists %q", got)
	}
	e.fails(`reading snapshot "nosuch" in snapshotter "native"`, "snapshot", "info", "nosuch")
	e.fails(`removing snapshot "base" in snapshotter "native"`, "snapshot", "rm", "base")
	e.fails(`committing snapshot "nosuch" as "x"`, "snapshot", "commit", "x", "nosuch")
	if r := e.run("--snapshotter", "nosuch", "snapshot", "ls"); r.code != 1 || !strings.Contains(r.err, "nosuch") {
		t.Errorf("unknown snapshotter: exit %d, %q", r.code, r.err)
	}
	t.Setenv("BERTH_SNAPSHOTTER", "fromenv")
	if r := e.run("snapshot", "ls"); r.code != 1 || !strings.Contains(r.err, "fromenv") {
		t.Errorf("BERTH_SNAPSHOTTER is not used: exit %d, %q", r.code, r.err)
	}
	if got := e.ok("--snapshotter", "native", "snapshot", "rm", "child", "v", "base", "b"); got != "child\nv\nbase\nb\n" {
		t.Errorf("rm printed %q", got)
	}
	if got := e.ok("--snapshotter", "native", "snapshot", "ls", "-q"); got != "" {
		t.Errorf("snapshots left: %q", got)
	}
}

// TestLoadUnpacks loads two images that share a layer, checks the
// snapshots and that removing the images frees them. Applying layers
// mounts, so it needs root.
func TestLoadUnpacks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unpacking layers mounts snapshots: needs root")
	}
	e := newEnv(t)
	base := testImage("base")
	app := testImage("base")
	app.Config.Env = []string{"APP=1"}
	app.Layers = append(app.Layers, &imagegen.Layer{CreatedBy: "app", Entries: []imagegen.Entry{
		imagegen.Dir("app", 0o755), imagegen.File("app/run", 0o755, []byte("#!/bin/sh\n")),
	}})
	archive := e.writeArchive("two.tar", imagegen.FormatOCI,
		imagegen.Named{Image: base, Names: []string{"base:1"}}, imagegen.Named{Image: app, Names: []string{"app:1"}})
	e.ok("load", "-i", archive)

	var inspected []struct {
		RootFS struct{ Layers []digest.Digest }
	}
	if err := json.Unmarshal([]byte(e.ok("image", "inspect", "app:1")), &inspected); err != nil {
		t.Fatal(err)
	}
	chain := identity.ChainIDs(inspected[0].RootFS.Layers)
	if len(chain) != 2 {
		t.Fatalf("app has %d layers", len(chain))
	}
	want := []string{chain[0].String() + "  committed", chain[1].String() + " " + chain[0].String() + " committed"}
	slices.Sort(want) // ls sorts by key
	if got := lines(e.ok("snapshot", "ls", "--format", "{{.Key}} {{.Parent}} {{.Kind}}")); !slices.Equal(got, want) {
		t.Errorf("snapshots after load:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := e.ok("content", "ls", "-q", "--filter", `labels."berth.gc.ref.snapshot.native"==`+chain[1].String()); len(lines(got)) != 1 {
		t.Errorf("configs labelled with app's top snapshot: %q", got)
	}

	e.ok("rmi", "app:1")
	if got := e.ok("snapshot", "ls", "-q"); got != chain[0].String()+"\n" {
		t.Errorf("snapshots after rmi app: %q, want the shared layer only", got)
	}
	e.ok("rmi", "base:1")
	if got := e.ok("snapshot", "ls", "-q"); got != "" {
		t.Errorf("snapshots after rmi of both: %q", got)
	}

	e.ok("load", "--no-unpack", "-i", archive)
	if got := e.ok("snapshot", "ls", "-q"); got != "" {
		t.Errorf("load --no-unpack unpacked: %q", got)
	}
}
