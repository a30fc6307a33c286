package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/mount"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
)

// snapshotters are the backends every snapshot test runs against.
var snapshotters = []string{"overlay", "native"}

// snapshotRow is one line of 'berth snapshot ls --format json'.
type snapshotRow struct {
	Key    string
	Parent string
	Kind   string
	Labels string
}

// snapshotList returns the snapshots of snapshotter in the default namespace, by key.
func (d *daemon) snapshotList(snapshotter string) map[string]snapshotRow {
	d.t.Helper()
	out := d.must("--snapshotter", snapshotter, "snapshot", "ls", "--format", "json")
	rows := map[string]snapshotRow{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r snapshotRow
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			d.t.Fatalf("snapshot ls --format json printed %q: %v", line, err)
		}
		rows[r.Key] = r
	}
	return rows
}

func keys(rows map[string]snapshotRow) []string {
	var out []string
	for k := range rows {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// chainIDs returns the chain IDs of the layers with these diff IDs.
func chainIDs(t *testing.T, diffIDs []string) []string {
	t.Helper()
	ds := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		ds[i] = digest.Digest(d)
	}
	var out []string
	for _, c := range identity.ChainIDs(ds) {
		out = append(out, c.String())
	}
	return out
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLoadUnpacksLayers loads images and checks that each layer became one
// committed snapshot named by its chain ID, shared between images, and that
// removing the images frees them.
func TestLoadUnpacksLayers(t *testing.T) {
	for _, sn := range snapshotters {
		t.Run(sn, func(t *testing.T) {
			d := startDaemon(t)
			b := func(args ...string) string { return d.must(append([]string{"--snapshotter", sn}, args...)...) }
			b("load", "-i", testImage("layers-docker.tar"))
			img := inspect(t, d, "layers")
			chain := chainIDs(t, img.RootFS.Layers)
			top := chain[len(chain)-1]

			snaps := d.snapshotList(sn)
			if !slices.Equal(keys(snaps), slices.Sorted(slices.Values(chain))) {
				t.Fatalf("snapshots %v, want the chain IDs %v", keys(snaps), chain)
			}
			for i, c := range chain {
				want := ""
				if i > 0 {
					want = chain[i-1]
				}
				if r := snaps[c]; r.Kind != "committed" || r.Parent != want {
					t.Errorf("snapshot of layer %d: %+v, want committed on %q", i+1, r, want)
				}
			}
			// The other snapshotter got nothing.
			other := "native"
			if sn == "native" {
				other = "overlay"
			}
			if got := d.snapshotList(other); len(got) != 0 {
				t.Errorf("snapshotter %s got snapshots too: %v", other, keys(got))
			}
			// The config blob ties the snapshots to the image.
			labelled := b("content", "ls", "-q", "--filter", `labels."berth.gc.ref.snapshot.`+sn+`"==`+top)
			if strings.TrimSpace(labelled) != img.ID {
				t.Errorf("blobs labelled with the top snapshot: %q, want the config %s", labelled, img.ID)
			}

			var info struct {
				Kind, Name, Parent string
				Created            time.Time
			}
			if err := json.Unmarshal([]byte(b("snapshot", "info", chain[0])), &info); err != nil {
				t.Fatal(err)
			}
			if info.Kind != "committed" || info.Name != chain[0] || info.Parent != "" || info.Created.IsZero() {
				t.Errorf("snapshot info %s: %+v", chain[0], info)
			}
			usage := b("snapshot", "usage", "--bytes", chain[1])
			var size, inodes int64
			if lines := strings.Split(strings.TrimSpace(usage), "\n"); len(lines) != 2 ||
				!strings.HasPrefix(lines[0], "KEY") {
				t.Errorf("snapshot usage printed %q", usage)
			} else if _, err := fmt.Sscanf(strings.TrimPrefix(lines[1], chain[1]), "%d %d", &size, &inodes); err != nil || size < 8<<20 || inodes < 10 {
				// Layer 2 holds an 8 MiB file and a dozen entries.
				t.Errorf("snapshot usage of layer 2: %q (%v)", lines[1], err)
			}
			tree := b("snapshot", "tree")
			var wantTree strings.Builder
			for i, c := range chain {
				prefix := strings.Repeat("  ", i)
				if i > 0 {
					prefix += `\_`
				}
				wantTree.WriteString(prefix + " " + c + "\n")
			}
			if tree != wantTree.String() {
				t.Errorf("snapshot tree:\n%s\nwant:\n%s", tree, wantTree.String())
			}

			// busybox's only layer is the first of layers; layers-oci has
			// the same layers gzip-compressed: nothing new is unpacked.
			b("load", "-i", testImage("busybox-docker.tar"))
			b("load", "-i", testImage("layers-oci.tar"))
			if bb := chainIDs(t, inspect(t, d, "busybox").RootFS.Layers); len(bb) != 1 || bb[0] != chain[0] {
				t.Fatalf("busybox's chain %v is not the first layer of layers %s", bb, chain[0])
			}
			if got := d.snapshotList(sn); !slices.Equal(keys(got), keys(snaps)) {
				t.Errorf("loading images with the same layers changed the snapshots: %v", keys(got))
			}
			var again struct{ Created time.Time }
			if err := json.Unmarshal([]byte(b("snapshot", "info", chain[0])), &again); err != nil {
				t.Fatal(err)
			}
			if !again.Created.Equal(info.Created) {
				t.Errorf("the shared layer was unpacked again (created %s, then %s)", info.Created, again.Created)
			}

			// The last image to use a snapshot frees it.
			b("rmi", "layers:latest")
			if got := d.snapshotList(sn); len(got) != len(chain) {
				t.Errorf("rmi of one of two names removed snapshots: %v", keys(got))
			}
			// rmi collects garbage before it returns: the snapshots are gone.
			b("rmi", "layers:oci")
			if got := keys(d.snapshotList(sn)); !slices.Equal(got, []string{chain[0]}) {
				t.Errorf("after rmi of layers: snapshots %v, want busybox's %s", got, chain[0])
			}
			b("rmi", "busybox")
			if got := keys(d.snapshotList(sn)); len(got) != 0 {
				t.Errorf("after rmi of the last image: snapshots %v", got)
			}
			if left := d.blobs(); len(left) != 0 {
				t.Errorf("blobs left: %v", left)
			}
		})
	}
}

// runMountLines runs the mount commands that 'berth snapshot mounts' printed
// and detaches them when the test ends.
func runMountLines(t *testing.T, lines string, target string) {
	t.Helper()
	lines = strings.TrimSpace(lines)
	if lines == "" {
		t.Fatal("no mount command printed")
	}
	for _, line := range strings.Split(lines, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "mount" || f[1] != "-t" {
			t.Fatalf("not a mount command: %q", line)
		}
		if out, err := exec.Command(f[0], f[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
	}
	t.Cleanup(func() { mount.Unmount(target) })
}

// TestSnapshotCommandsByHand prepares, mounts, writes, commits, views and
// removes snapshots with 'berth snapshot'.
func TestSnapshotCommandsByHand(t *testing.T) {
	for _, sn := range snapshotters {
		t.Run(sn, func(t *testing.T) {
			d := startDaemon(t)
			b := func(args ...string) string { return d.must(append([]string{"--snapshotter", sn}, args...)...) }
			fails := func(want string, args ...string) {
				t.Helper()
				_, errOut, code := d.berth(append([]string{"--snapshotter", sn}, args...)...)
				if code == 0 || !strings.Contains(errOut, want) {
					t.Errorf("berth %v: exit %d, %q; want a failure naming %q", args, code, errOut, want)
				}
			}
			b("load", "-i", testImage("busybox-docker.tar"))
			base := chainIDs(t, inspect(t, d, "busybox").RootFS.Layers)[0]

			mnt := tempMountDir(t)
			printed := b("snapshot", "prepare", "--target", mnt, "work", base)
			if got := b("snapshot", "mounts", mnt, "work"); got != printed {
				t.Errorf("mounts printed %q, prepare --target %q", got, printed)
			}
			if !strings.HasPrefix(printed, "mount -t ") || !strings.Contains(printed, " "+mnt) {
				t.Errorf("prepare --target printed %q", printed)
			}
			runMountLines(t, printed, mnt)
			if _, err := os.Stat(filepath.Join(mnt, "bin", "busybox")); err != nil {
				t.Errorf("the parent's files are not visible in the active snapshot: %v", err)
			}
			if err := os.WriteFile(filepath.Join(mnt, "hello.txt"), []byte("written by hand\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(mnt, "etc", "group")); err != nil {
				t.Fatal(err)
			}
			if err := mount.Unmount(mnt); err != nil {
				t.Fatal(err)
			}
			if r := d.snapshotList(sn)["work"]; r.Kind != "active" || r.Parent != base {
				t.Errorf("work is %+v, want active on %s", r, base)
			}
			b("snapshot", "commit", "--label", "by=hand", "mine", "work")
			snaps := d.snapshotList(sn)
			if _, ok := snaps["work"]; ok {
				t.Errorf("the active snapshot is still listed after commit")
			}
			if r := snaps["mine"]; r.Kind != "committed" || r.Parent != base || !strings.Contains(r.Labels, "by=hand") {
				t.Errorf("mine is %+v", r)
			}

			printed = b("snapshot", "view", "--target", mnt, "look", "mine")
			runMountLines(t, printed, mnt)
			if data, err := os.ReadFile(filepath.Join(mnt, "hello.txt")); err != nil || string(data) != "written by hand\n" {
				t.Errorf("view of the committed snapshot: hello.txt = %q, %v", data, err)
			}
			if _, err := os.Stat(filepath.Join(mnt, "etc", "group")); !os.IsNotExist(err) {
				t.Errorf("the file removed before commit is back in the view: %v", err)
			}
			if _, err := os.Stat(filepath.Join(mnt, "etc", "passwd")); err != nil {
				t.Errorf("the parent's files are not in the view: %v", err)
			}
			if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); err == nil {
				t.Errorf("a view is writable")
			}
			if err := mount.Unmount(mnt); err != nil {
				t.Fatal(err)
			}
			if r := d.snapshotList(sn)["look"]; r.Kind != "view" || r.Parent != "mine" {
				t.Errorf("look is %+v", r)
			}

			fails("mine", "snapshot", "rm", "mine") // it is look's parent
			fails("nosuch", "snapshot", "prepare", "x", "nosuch")
			fails("look", "snapshot", "prepare", "look", base)
			fails("nosuch", "snapshot", "commit", "y", "nosuch")
			fails("nosuch", "snapshot", "info", "nosuch")
			if got := b("snapshot", "rm", "look", "mine"); got != "look\nmine\n" {
				t.Errorf("snapshot rm printed %q", got)
			}
			if got := keys(d.snapshotList(sn)); !slices.Equal(got, []string{base}) {
				t.Errorf("snapshots after rm: %v", got)
			}
		})
	}
}

// TestSnapshotterSocket calls the overlay berth-snapshotter on its own
// socket with grpcurl, and berthd's multiplexed Snapshots service.
func TestSnapshotterSocket(t *testing.T) {
	if env.grpcurl == "" {
		t.Skip("GRPCURL is not set (run 'make integration')")
	}
	d := startDaemon(t)
	d.must("load", "-i", testImage("busybox-docker.tar"))
	base := chainIDs(t, inspect(t, d, "busybox").RootFS.Layers)[0]

	sock := filepath.Join(d.state, "snapshotter-overlay.sock")
	if out := grpcurl(t, "-plaintext", "-unix", sock, "list"); !strings.Contains(out, "berth.snapshots.v1.Snapshots") {
		t.Errorf("the snapshotter's socket does not list the Snapshots service:\n%s", out)
	}
	out := grpcurl(t, "-plaintext", "-unix", "-d", "{}", sock, "berth.snapshots.v1.Snapshots/List")
	if !strings.Contains(out, "KIND_COMMITTED") {
		t.Errorf("Snapshots/List on the snapshotter's socket shows no committed snapshot:\n%s", out)
	}
	out = grpcurl(t, "-plaintext", "-unix", "-d", `{"snapshotter":"overlay"}`, sock, "berth.snapshots.v1.Snapshots/Capabilities")
	if !strings.Contains(out, "rebase") {
		t.Errorf("overlay does not report the rebase capability:\n%s", out)
	}
	// berthd serves every snapshotter, by name, in the request's namespace.
	out = grpcurl(t, "-plaintext", "-unix", "-H", "berth-namespace: default", "-d", `{"snapshotter":"overlay"}`, d.address, "berth.snapshots.v1.Snapshots/List")
	if !strings.Contains(out, base) {
		t.Errorf("berthd's Snapshots/List lacks %s:\n%s", base, out)
	}
	out = grpcurl(t, "-plaintext", "-unix", "-H", "berth-namespace: other", "-d", `{"snapshotter":"overlay"}`, d.address, "berth.snapshots.v1.Snapshots/List")
	if strings.Contains(out, base) {
		t.Errorf("another namespace sees default's snapshots:\n%s", out)
	}
	if out := grpcurl(t, "-plaintext", "-unix", d.address, "list"); !strings.Contains(out, "berth.diff.v1.Diff") || !strings.Contains(out, "berth.snapshots.v1.Snapshots") {
		t.Errorf("berthd does not list the Diff and Snapshots services:\n%s", out)
	}
	// berth info names the snapshotters and their sockets.
	info := d.must("info")
	for _, want := range []string{"snapshotter", "overlay", sock, "native", filepath.Join(d.state, "snapshotter-native.sock")} {
		if !strings.Contains(info, want) {
			t.Errorf("berth info lacks %q:\n%s", want, info)
		}
	}
}

// snapshotterPID returns the pid of berthd's berth-snapshotter child that
// serves backend.
func snapshotterPID(t *testing.T, d *daemon, backend string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The fields after the command name (which may hold spaces) start
		// with the state and the parent pid.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		var state string
		var ppid int
		if _, err := fmt.Sscanf(rest, " %s %d", &state, &ppid); err != nil || ppid != d.cmd.Process.Pid || state == "Z" {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(string(cmdline), "\x00")
		if strings.HasSuffix(args[0], "berth-snapshotter") && slices.Contains(args, backend) {
			return pid
		}
	}
	return 0
}

// TestSnapshotterRestarts kills the overlay child and checks that berthd
// starts it again and that the snapshots are still there.
func TestSnapshotterRestarts(t *testing.T) {
	d := startDaemon(t)
	d.must("load", "-i", testImage("busybox-docker.tar"))
	before := d.snapshotList("overlay")
	pid := snapshotterPID(t, d, "overlay")
	if pid == 0 {
		t.Fatalf("no berth-snapshotter child for overlay\n%s", d.log)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new overlay snapshotter", func() bool {
		p := snapshotterPID(t, d, "overlay")
		return p != 0 && p != pid
	})
	waitFor(t, "the snapshotter to answer", func() bool {
		_, _, code := d.berth("snapshot", "ls")
		return code == 0
	})
	if got := d.snapshotList("overlay"); !slices.Equal(keys(got), keys(before)) {
		t.Errorf("snapshots after the restart: %v, want %v", keys(got), keys(before))
	}
	d.must("load", "-i", testImage("layers-docker.tar"))
	if got := d.snapshotList("overlay"); len(got) != 4 {
		t.Errorf("after loading layers: %v", keys(got))
	}
}

// TestExternalSnapshotter starts a berth-snapshotter by hand, names it in
// berthd's configuration, and uses it through berthd with --snapshotter:
// any process that serves berth.snapshots.v1 plugs in this way.
func TestExternalSnapshotter(t *testing.T) {
	dir, err := os.MkdirTemp("", "berth-it-ext-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Cleanup(func() { checkNoMounts(t, dir) })
	sock := filepath.Join(dir, "mine.sock")
	ext := exec.Command(filepath.Join(env.bin, "berth-snapshotter"), "--backend", "native",
		"--root", filepath.Join(dir, "root"), "--address", sock)
	extLog := &lockedWriter{}
	ext.Stderr = extLog
	if err := ext.Start(); err != nil {
		t.Fatal(err)
	}
	extDone := make(chan error, 1)
	go func() { extDone <- ext.Wait() }()
	// Registered before startDaemon's cleanups, so it runs after berthd stopped.
	t.Cleanup(func() {
		_ = ext.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-extDone:
			if err != nil {
				t.Errorf("the external berth-snapshotter exited with %v\n%s", err, extLog)
			}
		case <-time.After(15 * time.Second):
			_ = ext.Process.Kill()
			<-extDone
			t.Errorf("the external berth-snapshotter did not stop on SIGTERM\n%s", extLog)
		}
	})
	waitFor(t, "the external snapshotter's socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	config := filepath.Join(dir, "berthd.toml")
	if err := os.WriteFile(config, []byte("[snapshotters.mine]\naddress = \""+sock+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	d := startDaemon(t, "--config", config)
	d.must("--snapshotter", "mine", "load", "-i", testImage("busybox-docker.tar"))
	base := chainIDs(t, inspect(t, d, "busybox").RootFS.Layers)[0]
	if got := keys(d.snapshotList("mine")); !slices.Equal(got, []string{base}) {
		t.Errorf("snapshots of mine: %v, want %s", got, base)
	}
	if got := d.snapshotList("overlay"); len(got) != 0 {
		t.Errorf("overlay got snapshots too: %v", keys(got))
	}
	if info := d.must("info"); !strings.Contains(info, "mine") || !strings.Contains(info, sock) {
		t.Errorf("berth info does not list the external snapshotter at %s:\n%s", sock, info)
	}
	// The snapshots are in the external process.
	if env.grpcurl != "" {
		if out := grpcurl(t, "-plaintext", "-unix", "-d", "{}", sock, "berth.snapshots.v1.Snapshots/List"); !strings.Contains(out, "KIND_COMMITTED") {
			t.Errorf("the external snapshotter holds no committed snapshot:\n%s", out)
		}
	}
	// A view through berthd mounts like any other.
	mnt := tempMountDir(t)
	runMountLines(t, d.must("--snapshotter", "mine", "snapshot", "view", "--target", mnt, "look", base), mnt)
	if _, err := os.Stat(filepath.Join(mnt, "bin", "busybox")); err != nil {
		t.Errorf("view of the external snapshot: %v", err)
	}
	if err := mount.Unmount(mnt); err != nil {
		t.Fatal(err)
	}
	d.must("--snapshotter", "mine", "snapshot", "rm", "look")
	d.must("rmi", "busybox")
	if got := keys(d.snapshotList("mine")); len(got) != 0 {
		t.Errorf("the external snapshotter keeps %v after rmi", got)
	}
}
