package mount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		options []string
		want    parsedOptions
	}{
		{nil, parsedOptions{}},
		{[]string{"ro", "rbind"}, parsedOptions{flags: unix.MS_RDONLY | unix.MS_BIND | unix.MS_REC}},
		{[]string{"ro", "rw"}, parsedOptions{}},
		{[]string{"nosuid", "nodev", "suid"}, parsedOptions{flags: unix.MS_NODEV}},
		{[]string{"bind", "rprivate"}, parsedOptions{flags: unix.MS_BIND, propagation: unix.MS_PRIVATE | unix.MS_REC}},
		{[]string{"lowerdir=/a:/b", "upperdir=/u", "ro", "workdir=/w", "index=off"},
			parsedOptions{flags: unix.MS_RDONLY, data: "lowerdir=/a:/b,upperdir=/u,workdir=/w,index=off"}},
		{[]string{"size=64k", "mode=755", "noexec"}, parsedOptions{flags: unix.MS_NOEXEC, data: "size=64k,mode=755"}},
	} {
		if got := parseOptions(tc.options); got != tc.want {
			t.Errorf("parseOptions(%q) = %+v, want %+v", tc.options, got, tc.want)
		}
	}
}

func TestCompactLowerdir(t *testing.T) {
	dir, data := compactLowerdir("index=off,lowerdir=/var/lib/berth/s/12/fs:/var/lib/berth/s/3/fs:/var/lib/berth/s/100/fs,upperdir=/var/lib/berth/s/13/fs")
	if dir != "/var/lib/berth/s" || data != "index=off,lowerdir=12/fs:3/fs:100/fs,upperdir=/var/lib/berth/s/13/fs" {
		t.Fatalf("compacted to %q in %q", data, dir)
	}
	// Paths that share nothing but "/" or are relative cannot be compacted.
	for _, data := range []string{"lowerdir=/a/x:/b/y", "lowerdir=a/x:a/y", "upperdir=/a/u"} {
		if dir, got := compactLowerdir(data); dir != "" || got != data {
			t.Errorf("compactLowerdir(%q) = %q, %q; want it unchanged", data, dir, got)
		}
	}
	if got := commonDir([]string{"/r/s/1/fs", "/r/s/1/fs"}); got != "/r/s/1" {
		t.Errorf("commonDir of one path twice = %q", got)
	}
	if got := commonDir([]string{"/r/s/1/fs", "/r/s10/fs"}); got != "/r" {
		t.Errorf("commonDir must compare whole path elements, got %q", got)
	}
}

func TestTooLongOptionsRefused(t *testing.T) {
	target := t.TempDir()
	long := strings.Repeat("x", unix.Getpagesize())
	for _, m := range []Mount{
		{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m", "x-note=" + long}},
		// The lowers share only "/", so relative paths do not help.
		{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a" + long + ":/b" + long}},
	} {
		err := m.Mount(target)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "kernel takes at most") {
			t.Errorf("mounting %s with %d bytes of options: got %v, want a clear invalid-argument error", m.Type, len(long), err)
		}
	}
}

func TestTargetMustStayInside(t *testing.T) {
	m := Mount{Type: "tmpfs", Source: "tmpfs", Target: "../escape"}
	if err := m.Mount(t.TempDir()); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("mount with target ../escape: got %v, want invalid argument", err)
	}
}

func TestInDirKeepsProcessWorkingDirectory(t *testing.T) {
	before, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var seen string
	if err := inDir(dir, func() (err error) { seen, err = os.Getwd(); return err }); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Getwd()
	if seen != dir || after != before {
		t.Fatalf("inside: %q (want %q); process before %q after %q", seen, dir, before, after)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
}

func isMounted(t *testing.T, path string) bool {
	t.Helper()
	ok, err := mountinfo.Mounted(path)
	if err != nil {
		t.Fatalf("checking whether %s is mounted: %v", path, err)
	}
	return ok
}

func TestBindReadOnly(t *testing.T) {
	needRoot(t)
	src, target := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := All([]Mount{{Type: "bind", Source: src, Options: []string{"rbind", "ro"}}}, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountAll(target) })
	if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "data" {
		t.Fatalf("reading through the bind mount: %q, %v", b, err)
	}
	err := os.WriteFile(filepath.Join(target, "g"), nil, 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Fatalf("writing into a read-only bind mount: got %v, want EROFS", err)
	}
	if err := Unmount(target); err != nil {
		t.Fatal(err)
	}
	if isMounted(t, target) {
		t.Fatal("still mounted after Unmount")
	}
	// Unmounting what is not mounted is not an error.
	if err := Unmount(target); err != nil {
		t.Fatalf("second Unmount: %v", err)
	}
}

func TestUnmountAllDeepestFirst(t *testing.T) {
	needRoot(t)
	target := t.TempDir()
	if err := (&Mount{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}).Mount(target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountAll(target) })
	sub := filepath.Join(target, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	// Two mounts stacked on sub, and one more on target itself.
	for i := 0; i < 2; i++ {
		if err := (&Mount{Type: "tmpfs", Source: "tmpfs", Target: "a/b"}).Mount(target); err != nil {
			t.Fatal(err)
		}
	}
	if err := (&Mount{Type: "tmpfs", Source: "tmpfs"}).Mount(target); err != nil {
		t.Fatal(err)
	}
	if err := UnmountAll(target); err != nil {
		t.Fatal(err)
	}
	if isMounted(t, target) {
		t.Fatal("target still mounted")
	}
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(target))
	if err != nil || len(infos) != 0 {
		t.Fatalf("mounts left under target: %d (%v)", len(infos), err)
	}
	if err := UnmountAll(filepath.Join(target, "missing")); err != nil {
		t.Fatalf("UnmountAll of a missing path: %v", err)
	}
}

func TestWithTempMount(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	var root string
	err := WithTempMountIn(context.Background(), base, []Mount{{Type: "tmpfs", Source: "tmpfs"}}, func(r string) error {
		root = r
		if !isMounted(t, r) {
			return errors.New("not mounted inside f")
		}
		return os.WriteFile(filepath.Join(r, "f"), nil, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary mount point %s not removed: %v", root, err)
	}
	// An error from f comes back, and the mount is still undone.
	boom := errors.New("boom")
	err = WithTempMountIn(context.Background(), base, []Mount{{Type: "tmpfs", Source: "tmpfs"}}, func(r string) error {
		root = r
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want f's error", err)
	}
	if entries, _ := os.ReadDir(base); len(entries) != 0 {
		t.Fatalf("left in base: %v", entries)
	}
}

// TestOverlayManyLowers mounts an overlay of 128 lower folders whose
// absolute paths together are far longer than a page.
func TestOverlayManyLowers(t *testing.T) {
	needRoot(t)
	base := filepath.Join(t.TempDir(), strings.Repeat("long-folder-name", 4), "snapshots")
	var lowers []string
	for i := 0; i < 128; i++ {
		dir := filepath.Join(base, fmt.Sprint(i), "fs")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("layer-%d", i)), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		lowers = append([]string{dir}, lowers...) // topmost first
	}
	upper, work := filepath.Join(base, "up", "fs"), filepath.Join(base, "up", "work")
	for _, d := range []string{upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := Mount{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + strings.Join(lowers, ":"), "upperdir=" + upper, "workdir=" + work}}
	if n := len(strings.Join(m.Options, ",")); n < unix.Getpagesize() {
		t.Fatalf("test setup: options are only %d bytes", n)
	}
	err := WithTempMount(context.Background(), []Mount{m}, func(root string) error {
		for _, i := range []int{0, 64, 127} {
			b, err := os.ReadFile(filepath.Join(root, fmt.Sprintf("layer-%d", i)))
			if err != nil || string(b) != fmt.Sprint(i) {
				return fmt.Errorf("layer %d through the overlay: %q, %v", i, b, err)
			}
		}
		return os.WriteFile(filepath.Join(root, "new"), []byte("up"), 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(upper, "new")); err != nil || string(b) != "up" {
		t.Fatalf("write did not land in the upper folder: %q, %v", b, err)
	}
}

func TestUnmountBusyDetaches(t *testing.T) {
	needRoot(t)
	target := t.TempDir()
	if err := (&Mount{Type: "tmpfs", Source: "tmpfs"}).Mount(target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = UnmountAll(target) })
	// An open file keeps the mount busy.
	f, err := os.Create(filepath.Join(target, "held"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Unmount(target); err != nil {
		t.Fatalf("Unmount of a busy mount: %v", err)
	}
	if isMounted(t, target) {
		t.Fatal("busy mount still attached after Unmount")
	}
	// The open file still works: the kernel finishes the unmount later.
	if _, err := f.WriteString("still writable"); err != nil {
		t.Fatalf("writing to the held file after the lazy unmount: %v", err)
	}
}

func TestReadOnlyView(t *testing.T) {
	got := ReadOnlyView([]Mount{
		{Type: "overlay", Source: "overlay", Options: []string{"index=off", "workdir=/s/2/work", "upperdir=/s/2/fs", "lowerdir=/s/1/fs:/s/0/fs"}},
		{Type: "bind", Source: "/s/3/fs", Options: []string{"rbind", "rw"}},
	})
	want := []Mount{
		{Type: "overlay", Source: "overlay", Options: []string{"index=off", "lowerdir=/s/2/fs:/s/1/fs:/s/0/fs", "ro"}},
		{Type: "bind", Source: "/s/3/fs", Options: []string{"rbind", "ro"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadOnlyView:\n got %+v\nwant %+v", got, want)
	}
}

func TestReadOnlyViewWhileMounted(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	var lower, upper, work string
	for _, p := range []*string{&lower, &upper, &work} {
		dir, err := os.MkdirTemp(base, "d")
		if err != nil {
			t.Fatal(err)
		}
		*p = dir
	}
	if err := os.WriteFile(filepath.Join(lower, "old"), []byte("lower"), 0o644); err != nil {
		t.Fatal(err)
	}
	rw := []Mount{{Type: "overlay", Source: "overlay", Options: []string{"workdir=" + work, "upperdir=" + upper, "lowerdir=" + lower}}}
	err := WithTempMount(context.Background(), rw, func(root string) error {
		if err := os.WriteFile(filepath.Join(root, "new"), []byte("upper"), 0o644); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(root, "old")); err != nil {
			return err
		}
		return WithTempMount(context.Background(), ReadOnlyView(rw), func(view string) error {
			if b, err := os.ReadFile(filepath.Join(view, "new")); err != nil || string(b) != "upper" {
				return fmt.Errorf("the view does not show the upper file: %q, %v", b, err)
			}
			if _, err := os.Stat(filepath.Join(view, "old")); !os.IsNotExist(err) {
				return fmt.Errorf("the view shows a file the upper directory deleted: %v", err)
			}
			if err := os.WriteFile(filepath.Join(view, "x"), nil, 0o644); err == nil {
				return fmt.Errorf("the view is writable")
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}
