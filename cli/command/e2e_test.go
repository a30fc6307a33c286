package command_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/cli/command"
	"github.com/berth-engine/berth/cli/formatter"
	"github.com/berth-engine/berth/cli/imageutil"
	"github.com/berth-engine/berth/internal/namespaces"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/server"
	"github.com/berth-engine/berth/snapshotter/native"
	"github.com/berth-engine/berth/snapshotter/snapshotserver"
	"github.com/berth-engine/berth/tools/mkimage/imagegen"
)

// env is a berthd served in-process on a temporary root, and the berth
// command line pointed at it.
type env struct {
	t       testing.TB
	address string
	dir     string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	// Socket paths are limited to 108 bytes; the test's temporary folder
	// may be longer, so the socket gets a short folder of its own.
	sockDir, err := os.MkdirTemp("", "berth-cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	cfg := server.DefaultConfig()
	cfg.Root = filepath.Join(dir, "root")
	cfg.State = filepath.Join(dir, "state")
	cfg.Address = filepath.Join(sockDir, "berthd.sock")
	cfg.LogLevel = "error"
	// The snapshotter is a native one served here, as an external
	// snapshotter, so that no berth-snapshotter binary is needed. Loads
	// that unpack need root (the layers are applied through mounts); the
	// tests that do not run as root load with --no-unpack.
	cfg.Snapshotters = map[string]server.SnapshotterConfig{
		"overlay": {Disabled: true},
		"native":  {Address: serveNative(t, filepath.Join(dir, "native"), filepath.Join(sockDir, "native.sock"))},
	}
	cfg.DefaultSnapshotter = "native"
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("starting berthd: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("serving berthd: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("berthd: %v", err)
		}
	})
	return &env{t: t, address: cfg.Address, dir: dir}
}

// serveNative serves a native snapshotter on root at socket until the test ends.
func serveNative(t testing.TB, root, socket string) string {
	t.Helper()
	sn, err := native.New(root)
	if err != nil {
		t.Fatalf("native snapshotter: %v", err)
	}
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	snapshotserver.Register(srv, sn, "native")
	go srv.Serve(l)
	t.Cleanup(func() {
		srv.Stop()
		sn.Close()
	})
	return socket
}

type result struct {
	out, err string
	code     int
}

// run runs berth with args against the test's berthd.
func (e *env) run(args ...string) result {
	return e.runWith(command.Streams{In: strings.NewReader("")}, args...)
}

func (e *env) runWith(s command.Streams, args ...string) result {
	e.t.Helper()
	var out, errb bytes.Buffer
	if s.Out == nil {
		s.Out = &out
	}
	s.Err = &errb
	if s.IsTerminal == nil {
		s.IsTerminal = func(any) bool { return false }
	}
	code := command.Run(context.Background(), append([]string{"--address", e.address}, args...), s, command.BuildInfo{Version: "test"})
	return result{out: out.String(), err: errb.String(), code: code}
}

// ok runs berth and fails the test unless it succeeds.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("berth %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

// fails runs berth, expects exit status 1 and an error naming want.
func (e *env) fails(want string, args ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 1 || !strings.Contains(r.err, "Error: "+want) {
		e.t.Fatalf("berth %s: exit %d, stderr %q; want exit 1 and %q", strings.Join(args, " "), r.code, r.err, "Error: "+want)
	}
	return r
}

// testImage is a tiny image whose content depends on seed. imagegen dates
// every image imagegen.Epoch().
func testImage(seed string) *imagegen.Image {
	return &imagegen.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"SEED=" + seed}, Labels: map[string]string{"seed": seed}},
		Layers: []*imagegen.Layer{{
			CreatedBy: "test layer " + seed,
			Entries: []imagegen.Entry{
				imagegen.Dir("etc", 0o755),
				imagegen.File("etc/seed", 0o644, []byte(seed)),
			},
		}},
	}
}

// writeArchive writes the images into an archive file.
func (e *env) writeArchive(name string, format imagegen.Format, imgs ...imagegen.Named) string {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	f, err := os.Create(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	if err := imagegen.WriteArchive(f, format, imgs...); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// configDigest is the IMAGE ID the archive format gives img.
func configDigest(t *testing.T, img *imagegen.Image, format imagegen.Format) string {
	t.Helper()
	cfg, _, err := imagegen.Digests(img, format)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.String()
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestNotRunning(t *testing.T) {
	var out, errb bytes.Buffer
	sock := filepath.Join(t.TempDir(), "nothing.sock")
	code := command.Run(context.Background(), []string{"--address", sock, "images"}, command.Streams{Out: &out, Err: &errb}, command.BuildInfo{})
	want := "Error: cannot connect to berthd at " + sock + ": is it running? start it with 'berthd' or set --address"
	if code != 1 || !strings.HasPrefix(errb.String(), want) {
		t.Errorf("exit %d, stderr %q; want exit 1 and %q", code, errb.String(), want)
	}
	if strings.Count(errb.String(), "Error:") != 1 {
		t.Errorf("the error is printed more than once: %q", errb.String())
	}
	// BERTH_ADDRESS is the default of --address.
	t.Setenv("BERTH_ADDRESS", sock)
	errb.Reset()
	code = command.Run(context.Background(), []string{"images"}, command.Streams{Out: &out, Err: &errb}, command.BuildInfo{})
	if code != 1 || !strings.Contains(errb.String(), sock) {
		t.Errorf("with BERTH_ADDRESS: exit %d, stderr %q", code, errb.String())
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errb bytes.Buffer
	run := func(args ...string) int {
		out.Reset()
		errb.Reset()
		return command.Run(context.Background(), args, command.Streams{Out: &out, Err: &errb}, command.BuildInfo{})
	}
	if code := run("images", "--bogus"); code != 125 || !strings.Contains(errb.String(), "unknown flag: --bogus") ||
		!strings.Contains(errb.String(), "See 'berth images --help'.") {
		t.Errorf("unknown flag: exit %d, stderr %q", code, errb.String())
	}
	if code := run("tag", "only-one"); code != 1 || !strings.Contains(errb.String(), "requires exactly 2 arguments") {
		t.Errorf("missing argument: exit %d, stderr %q", code, errb.String())
	}
	if code := run("imagse"); code != 1 || !strings.Contains(errb.String(), "Did you mean this?") {
		t.Errorf("unknown command: exit %d, stderr %q", code, errb.String())
	}
	if code := run("--namespace", "bad/ns", "images"); code != 1 || !strings.Contains(errb.String(), `namespace "bad/ns"`) {
		t.Errorf("bad namespace: exit %d, stderr %q", code, errb.String())
	}
	if code := run("images", "--filter", "bogus=1"); code != 1 || !strings.Contains(errb.String(), `invalid filter "bogus"`) {
		t.Errorf("bad filter: exit %d, stderr %q", code, errb.String())
	}
	if code := run("--help"); code != 0 || !strings.Contains(out.String(), "images") {
		t.Errorf("--help: exit %d, stdout %q", code, out.String())
	}
}

func TestImageLifecycle(t *testing.T) {
	e := newEnv(t)
	bb := testImage("busybox")
	app := testImage("app")
	anon := testImage("anonymous")
	archive := e.writeArchive("in.tar", imagegen.FormatDocker,
		imagegen.Named{Image: bb, Names: []string{"busybox:latest"}},
		imagegen.Named{Image: app, Names: []string{"my/app:v1", "registry.local:5000/team/app:v1"}},
		imagegen.Named{Image: anon},
	)
	bbID := configDigest(t, bb, imagegen.FormatDocker)
	appID := configDigest(t, app, imagegen.FormatDocker)
	anonID := configDigest(t, anon, imagegen.FormatDocker)

	out := e.ok("load", "--no-unpack", "-i", archive)
	for _, want := range []string{"Loaded image: busybox:latest\n", "Loaded image: my/app:v1\n",
		"Loaded image: registry.local:5000/team/app:v1\n", "Loaded image ID: " + anonID + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("load output %q lacks %q", out, want)
		}
	}

	// The table: newest first, then by name; dangling as <none>, IDs
	// truncated. imagegen dates all images the same.
	rows := lines(e.ok("images"))
	if len(rows) != 5 {
		t.Fatalf("images: want header and 4 rows, got %q", rows)
	}
	if f := strings.Fields(rows[0]); strings.Join(f, " ") != "REPOSITORY TAG IMAGE ID CREATED SIZE" {
		t.Errorf("header = %q", rows[0])
	}
	created := formatter.TimeAgo(imagegen.Epoch(), time.Now())
	wantRows := [][]string{
		{"busybox", "latest", bbID[7:19], created},
		{"my/app", "v1", appID[7:19], created},
		{"registry.local:5000/team/app", "v1", appID[7:19], created},
		{"<none>", "<none>", anonID[7:19], created},
	}
	for i, want := range wantRows {
		got := strings.Join(strings.Fields(rows[i+1]), " ")
		if !strings.HasPrefix(got, strings.Join(want, " ")+" ") || !strings.HasSuffix(got, "kB") {
			t.Errorf("row %d = %q, want %q and a size in kB", i+1, rows[i+1], want)
		}
	}

	if got := lines(e.ok("images", "-q")); strings.Join(got, " ") != strings.Join([]string{bbID[7:19], appID[7:19], appID[7:19], anonID[7:19]}, " ") {
		t.Errorf("images -q = %q", got)
	}
	if got := e.ok("images", "--no-trunc", "--format", "{{.ID}}", "busybox"); got != bbID+"\n" {
		t.Errorf("images --no-trunc busybox = %q, want %q", got, bbID)
	}
	if got := e.ok("images", "--filter", "dangling=true", "-q"); got != anonID[7:19]+"\n" {
		t.Errorf("dangling=true: %q", got)
	}
	if got := lines(e.ok("images", "--filter", "reference=*/app", "--format", "{{.Repository}}:{{.Tag}}")); len(got) != 1 || got[0] != "my/app:v1" {
		t.Errorf("reference=*/app: %q", got)
	}
	digestRows := lines(e.ok("images", "--digests", "busybox"))
	if len(digestRows) != 2 || !strings.Contains(digestRows[0], "DIGEST") || !strings.Contains(digestRows[1], "sha256:") {
		t.Errorf("images --digests: %q", digestRows)
	}
	var js struct{ Repository, Tag, ID, Size, CreatedSince string }
	if err := json.Unmarshal([]byte(e.ok("images", "--format", "json", "busybox")), &js); err != nil {
		t.Fatalf("images --format json: %v", err)
	}
	if js.Repository != "busybox" || js.Tag != "latest" || js.ID != bbID[7:19] || js.CreatedSince != created {
		t.Errorf("images --format json = %+v", js)
	}

	// Inspect: Docker's shape, every name of the image.
	var insp []struct {
		ID       string `json:"Id"`
		RepoTags []string
		Os       string
		Config   struct{ Env, Cmd []string }
		RootFS   struct {
			Type   string
			Layers []string
		}
	}
	if err := json.Unmarshal([]byte(e.ok("image", "inspect", "my/app:v1")), &insp); err != nil {
		t.Fatalf("inspect: %v", err)
	}
	if len(insp) != 1 || insp[0].ID != appID || strings.Join(insp[0].RepoTags, ",") != "my/app:v1,registry.local:5000/team/app:v1" ||
		insp[0].Os != "linux" || insp[0].Config.Cmd[0] != "sh" || insp[0].RootFS.Type != "layers" || len(insp[0].RootFS.Layers) != 1 {
		t.Errorf("inspect = %+v", insp)
	}
	if got := e.ok("image", "inspect", "-f", "{{.ID}} {{join .RepoTags \",\"}}", bbID[7:19]); got != bbID+" busybox:latest\n" {
		t.Errorf("inspect -f = %q", got)
	}
	r := e.fails("No such image: busybox:1.36", "image", "inspect", "busybox", "busybox:1.36")
	if !strings.Contains(r.out, bbID) {
		t.Errorf("inspect of one found and one missing image prints the found one: %q", r.out)
	}

	// An unnamed image saved by ID loads back unnamed.
	anonTar := filepath.Join(e.dir, "anon.tar")
	e.ok("save", "-o", anonTar, anonID[7:19])
	e.ok("namespace", "create", "anon")
	if got := e.ok("-n", "anon", "load", "--no-unpack", "-i", anonTar); got != "Loaded image ID: "+anonID+"\n" {
		t.Errorf("load of an unnamed image = %q", got)
	}
	if got := e.ok("-n", "anon", "images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}"); got != "<none> <none> "+anonID[7:19]+"\n" {
		t.Errorf("images after loading an unnamed image = %q", got)
	}

	// Tag, then untag: the image stays while it has a name.
	e.ok("tag", "busybox", "my/busybox:v1")
	if got := e.ok("images", "--format", "{{.ID}}", "my/busybox"); got != bbID[7:19]+"\n" {
		t.Errorf("tagged image: %q", got)
	}
	e.fails("refusing to create a tag with a digest reference", "tag", "busybox", "busybox@"+bbID)
	if got := e.ok("rmi", "my/busybox:v1"); got != "Untagged: my/busybox:v1\n" {
		t.Errorf("rmi of one of two names = %q", got)
	}
	e.ok("image", "inspect", "busybox")

	// By ID, an image named in two repositories needs -f.
	e.fails("conflict: unable to delete "+appID[7:19]+" (must be forced) - image is referenced in multiple repositories", "rmi", appID[7:19])
	if got := e.ok("rmi", "-f", appID[7:19]); got != "Untagged: my/app:v1\nUntagged: registry.local:5000/team/app:v1\nDeleted: "+appID+"\n" {
		t.Errorf("rmi -f by ID = %q", got)
	}
	// The blobs went with it, before rmi returned.
	if strings.Contains(e.ok("content", "ls", "-q"), appID) {
		t.Errorf("the config of the removed image is still in the content store")
	}
	// The last name of an image: untagged and deleted.
	if got := e.ok("rmi", "busybox"); got != "Untagged: busybox:latest\nDeleted: "+bbID+"\n" {
		t.Errorf("rmi of the last name = %q", got)
	}
	// A dangling image by ID.
	if got := e.ok("rmi", anonID[:16]); got != "Deleted: "+anonID+"\n" {
		t.Errorf("rmi of a dangling image = %q", got)
	}
	if got := e.ok("images", "-q"); got != "" {
		t.Errorf("images after removing all: %q", got)
	}
	if got := e.ok("content", "ls", "-q"); got != "" {
		t.Errorf("content after removing all images: %q", got)
	}
	e.fails("No such image: busybox", "rmi", "busybox")
}

func TestLoadMovesName(t *testing.T) {
	e := newEnv(t)
	old := testImage("old")
	newer := testImage("new")
	kept := testImage("kept")
	e.ok("load", "--no-unpack", "-i", e.writeArchive("old.tar", imagegen.FormatOCI,
		imagegen.Named{Image: old, Names: []string{"busybox:latest"}},
		imagegen.Named{Image: kept, Names: []string{"kept:1", "kept:2"}}))
	e.ok("load", "--no-unpack", "-i", e.writeArchive("new.tar", imagegen.FormatOCI,
		imagegen.Named{Image: newer, Names: []string{"busybox:latest", "kept:1"}}))
	got := e.ok("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	want := map[string]bool{
		"busybox:latest " + configDigest(t, newer, imagegen.FormatOCI): true,
		"kept:1 " + configDigest(t, newer, imagegen.FormatOCI):         true,
		"kept:2 " + configDigest(t, kept, imagegen.FormatOCI):          true,
	}
	for _, l := range lines(got) {
		if !want[l] {
			t.Errorf("unexpected image %q", l)
		}
		delete(want, l)
	}
	if len(want) > 0 {
		t.Errorf("missing images %v in %q", want, got)
	}
}

func TestLoadFailureLeavesNothing(t *testing.T) {
	e := newEnv(t)
	img := testImage("x")
	path := e.writeArchive("full.tar", imagegen.FormatDocker, imagegen.Named{Image: img, Names: []string{"x:1"}})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(e.dir, "truncated.tar")
	if err := os.WriteFile(truncated, data[:len(data)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.run("load", "--no-unpack", "-i", truncated)
	if r.code != 1 || !strings.HasPrefix(r.err, "Error: loading the archive: ") {
		t.Errorf("truncated archive: exit %d, stderr %q", r.code, r.err)
	}
	if got := e.ok("images", "-q"); got != "" {
		t.Errorf("images after a failed load: %q", got)
	}
	if got := e.ok("content", "ls", "-q"); got != "" {
		t.Errorf("content after a failed load: %q", got)
	}

	// Not an archive at all, from stdin.
	r = e.runWith(command.Streams{In: strings.NewReader("this is not a tar")}, "load", "--no-unpack")
	if r.code != 1 || !strings.Contains(r.err, "Error: ") {
		t.Errorf("not a tar: exit %d, stderr %q", r.code, r.err)
	}
	// A terminal on stdin.
	r = e.runWith(command.Streams{In: strings.NewReader(""), IsTerminal: func(s any) bool { return true }}, "load", "--no-unpack")
	if r.code != 1 || !strings.Contains(r.err, "requested load from stdin, but stdin is empty or a terminal: use -i FILE or redirect") {
		t.Errorf("terminal stdin: exit %d, stderr %q", r.code, r.err)
	}
}

func TestSaveAndLoadBack(t *testing.T) {
	e := newEnv(t)
	img := testImage("roundtrip")
	e.ok("load", "--no-unpack", "-i", e.writeArchive("in.tar", imagegen.FormatOCI, imagegen.Named{Image: img, Names: []string{"busybox"}}))
	e.ok("tag", "busybox", "my/busybox:v1")
	id := configDigest(t, img, imagegen.FormatOCI)

	out := filepath.Join(e.dir, "out.tar")
	e.ok("save", "-o", out, "busybox", "my/busybox:v1")
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		t.Fatalf("save wrote no archive: %v", err)
	}
	// Nothing but the archive is left in its folder.
	entries, _ := os.ReadDir(e.dir)
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), ".") {
			t.Errorf("save left %s behind", en.Name())
		}
	}
	// To stdout, when it is not a terminal.
	var buf bytes.Buffer
	if r := e.runWith(command.Streams{Out: &buf}, "save", "busybox"); r.code != 0 || buf.Len() == 0 {
		t.Fatalf("save to stdout: exit %d, %d bytes, stderr %q", r.code, buf.Len(), r.err)
	}
	// Never to a terminal.
	r := e.runWith(command.Streams{IsTerminal: func(any) bool { return true }}, "save", "busybox")
	if r.code != 1 || !strings.Contains(r.err, "cowardly refusing to save to a terminal. Use the -o flag or redirect") {
		t.Errorf("save to a terminal: exit %d, stderr %q", r.code, r.err)
	}
	// A failed save leaves no file.
	missing := filepath.Join(e.dir, "missing.tar")
	e.fails("No such image: nothere", "save", "-o", missing, "nothere")
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a failed save left %s", missing)
	}

	// Into another namespace, back from the archive: same ID, both names.
	e.ok("namespace", "create", "other")
	got := e.ok("-n", "other", "load", "--no-unpack", "-i", out)
	if !strings.Contains(got, "Loaded image: busybox:latest") || !strings.Contains(got, "Loaded image: my/busybox:v1") {
		t.Errorf("load of the saved archive: %q", got)
	}
	if got := e.ok("-n", "other", "images", "--no-trunc", "-q"); got != id+"\n"+id+"\n" {
		t.Errorf("IDs after the round trip = %q, want %s twice", got, id)
	}
	// And from stdin.
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	e.ok("namespace", "create", "third")
	if r := e.runWith(command.Streams{In: f}, "-n", "third", "load", "--no-unpack", "-q"); r.code != 0 || !strings.Contains(r.out, "Loaded image: busybox:latest") {
		t.Errorf("load from stdin: exit %d, stdout %q, stderr %q", r.code, r.out, r.err)
	}
}

func TestContentCommands(t *testing.T) {
	e := newEnv(t)
	img := testImage("content")
	e.ok("load", "--no-unpack", "-i", e.writeArchive("in.tar", imagegen.FormatOCI, imagegen.Named{Image: img, Names: []string{"c:1"}}))
	id := configDigest(t, img, imagegen.FormatOCI)

	digests := lines(e.ok("content", "ls", "-q"))
	if len(digests) != 3 { // manifest, config, layer
		t.Fatalf("content ls -q: %q", digests)
	}
	table := lines(e.ok("content", "ls"))
	if f := strings.Fields(table[0]); strings.Join(f, " ") != "DIGEST SIZE AGE LABELS" || len(table) != 4 {
		t.Errorf("content ls = %q", table)
	}
	if got := e.ok("content", "ls", "-q", "--filter", "digest=="+id); got != id+"\n" {
		t.Errorf("content ls --filter digest==: %q", got)
	}
	cfg := e.ok("content", "get", id)
	var parsed ocispec.Image
	if err := json.Unmarshal([]byte(cfg), &parsed); err != nil || parsed.Config.Labels["seed"] != "content" {
		t.Errorf("content get of the config: %v, %q", err, cfg)
	}
	r := e.runWith(command.Streams{IsTerminal: func(any) bool { return true }}, "content", "get", id)
	if r.code != 1 || !strings.Contains(r.err, "refusing to write blob") {
		t.Errorf("content get to a terminal: exit %d, stderr %q", r.code, r.err)
	}
	e.fails(`"sha256:xyz" is not a digest`, "content", "get", "sha256:xyz")
	missing := "sha256:" + strings.Repeat("0", 64)
	e.fails("No such blob: "+missing, "content", "get", missing)

	r = e.run("content", "rm", id, missing)
	if r.code != 1 || r.out != id+"\n" || !strings.Contains(r.err, "Error: No such blob: "+missing) {
		t.Errorf("content rm of one present and one missing blob: exit %d, stdout %q, stderr %q", r.code, r.out, r.err)
	}
	// The image lost its config. The listing shows what the record's
	// summary says; inspect, which reads the config, fails naming it.
	if got := e.ok("images", "--no-trunc", "-q"); got != id+"\n" {
		t.Errorf("images after removing the config: %q", got)
	}
	e.fails("reading image config "+id, "image", "inspect", "c:1")
}

// A record without the summary label (made through the API by another
// client) is read from its blobs and gets the label for the next listing.
func TestImagesWithoutSummary(t *testing.T) {
	e := newEnv(t)
	img := testImage("summary")
	e.ok("load", "--no-unpack", "-i", e.writeArchive("in.tar", imagegen.FormatOCI, imagegen.Named{Image: img, Names: []string{"s:1"}}))
	id := configDigest(t, img, imagegen.FormatOCI)

	ctx := namespaces.WithNamespace(context.Background(), "default")
	cl, err := client.New(ctx, e.address)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec, err := cl.Images.Get(ctx, "docker.io/library/s:1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Labels[imageutil.LabelSummary] == "" {
		t.Fatalf("load set no %s label: %v", imageutil.LabelSummary, rec.Labels)
	}
	if _, err := cl.Images.Create(ctx, images.Image{Name: "docker.io/library/bare:1", Target: rec.Target}); err != nil {
		t.Fatal(err)
	}
	if got := e.ok("images", "--no-trunc", "--format", "{{.Repository}} {{.ID}}", "bare"); got != "bare "+id+"\n" {
		t.Errorf("images of a record without summary: %q", got)
	}
	bare, err := cl.Images.Get(ctx, "docker.io/library/bare:1")
	if err != nil {
		t.Fatal(err)
	}
	if got := bare.Labels[imageutil.LabelSummary]; got != "" {
		t.Errorf("a listing wrote the summary %q: listing must not write", got)
	}
}

func TestNamespaceCommands(t *testing.T) {
	e := newEnv(t)
	e.ok("namespace", "create", "team-a", "--label", "owner=alice", "--label", "tier=dev")
	e.ok("ns", "create", "team-b")
	e.fails(`creating namespace "team-a"`, "namespace", "create", "team-a")
	rows := lines(e.ok("namespace", "ls"))
	found := map[string]string{}
	for _, r := range rows[1:] {
		f := strings.Fields(r)
		found[f[0]] = f[1]
	}
	if found["team-a"] != "owner=alice,tier=dev" || found["team-b"] != "-" {
		t.Errorf("namespace ls = %q", rows)
	}
	if got := e.ok("ns", "ls", "--format", `{{.Name}}={{index .LabelMap "owner"}}`); !strings.Contains(got, "team-a=alice\n") {
		t.Errorf("namespace ls --format = %q", got)
	}

	// A namespace that holds an image cannot go.
	e.ok("-n", "team-a", "load", "--no-unpack", "-i", e.writeArchive("in.tar", imagegen.FormatOCI, imagegen.Named{Image: testImage("ns"), Names: []string{"x"}}))
	e.fails(`removing namespace "team-a"`, "namespace", "rm", "team-a")
	if got := e.ok("namespace", "rm", "team-b"); got != "team-b\n" {
		t.Errorf("namespace rm = %q", got)
	}
	if got := e.ok("-n", "team-a", "images", "-q"); got == "" {
		t.Errorf("the image of team-a is not listed in team-a")
	}
	if got := e.ok("images", "-q"); got != "" {
		t.Errorf("the image of team-a is listed in default: %q", got)
	}
	t.Setenv("BERTH_NAMESPACE", "team-a")
	if got := e.ok("images", "-q"); got == "" {
		t.Errorf("BERTH_NAMESPACE=team-a does not list team-a's image")
	}
}

func TestVersionAndInfo(t *testing.T) {
	e := newEnv(t)
	out := e.ok("version")
	if !strings.HasPrefix(out, "Client:\n Version:") || !strings.Contains(out, "\nServer:\n Version:") {
		t.Errorf("version = %q", out)
	}
	var v struct {
		Client struct{ Version string }
		Server *struct{ Version, GoVersion string }
	}
	if err := json.Unmarshal([]byte(e.ok("version", "--format", "json")), &v); err != nil || v.Client.Version != "test" || v.Server == nil || v.Server.GoVersion == "" {
		t.Errorf("version --format json = %+v, %v", v, err)
	}
	if got := e.ok("version", "-f", "{{.Server.Os}}"); got != "linux\n" {
		t.Errorf("version -f = %q", got)
	}

	out = e.ok("info")
	for _, want := range []string{"Server:", "Root Dir:", filepath.Join(e.dir, "root"), "Components:", "berth.content.v1.Content"} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
	var info struct {
		RootDir    string
		NCPU       int
		Components []struct{ Name, Status string }
	}
	if err := json.Unmarshal([]byte(e.ok("info", "--format", "json")), &info); err != nil || info.RootDir != filepath.Join(e.dir, "root") || info.NCPU == 0 || len(info.Components) == 0 {
		t.Errorf("info --format json = %+v, %v", info, err)
	}

	// Without berthd, version still prints the client, then the error.
	var o, errb bytes.Buffer
	code := command.Run(context.Background(), []string{"--address", filepath.Join(e.dir, "none.sock"), "version"},
		command.Streams{Out: &o, Err: &errb}, command.BuildInfo{Version: "test"})
	if code != 1 || !strings.HasPrefix(strings.Join(strings.Fields(o.String()), " "), "Client: Version: test") || strings.Contains(o.String(), "Server:") || !strings.Contains(errb.String(), "cannot connect") {
		t.Errorf("version without berthd: exit %d, stdout %q, stderr %q", code, o.String(), errb.String())
	}
}

func TestProgressOnlyOnATerminal(t *testing.T) {
	e := newEnv(t)
	path := e.writeArchive("in.tar", imagegen.FormatDocker, imagegen.Named{Image: testImage("progress"), Names: []string{"p:1"}})
	var out bytes.Buffer
	onTerminal := command.Streams{Out: &out, IsTerminal: func(s any) bool { return s == any(&out) }}

	r := e.runWith(onTerminal, "load", "--no-unpack", "-i", path)
	if r.code != 0 || !strings.Contains(out.String(), "\rLoading ") || !strings.Contains(out.String(), " / ") ||
		!strings.HasSuffix(out.String(), "\r\x1b[KLoaded image: p:1\n") {
		t.Errorf("load on a terminal: exit %d, stdout %q", r.code, out.String())
	}
	out.Reset()
	if r := e.runWith(onTerminal, "load", "--no-unpack", "-q", "-i", path); r.code != 0 || out.String() != "Loaded image: p:1\n" {
		t.Errorf("load -q on a terminal: exit %d, stdout %q", r.code, out.String())
	}
	if got := e.ok("load", "--no-unpack", "-i", path); got != "Loaded image: p:1\n" {
		t.Errorf("load off a terminal: %q", got)
	}
	out.Reset()
	if r := e.runWith(onTerminal, "save", "-o", filepath.Join(e.dir, "out.tar"), "p:1"); r.code != 0 || !strings.HasPrefix(out.String(), "\rSaving ") {
		t.Errorf("save on a terminal: exit %d, stdout %q", r.code, out.String())
	}
}

func TestMain(m *testing.M) {
	// berthd logs through the default logger; keep test output to failures.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}
