package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
)

// linkTree makes a root whose links try to lead out of it, to the canary.
func linkTree(t *testing.T, c *canary) string {
	root := t.TempDir()
	for _, d := range []string{"etc", "d/sub"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{"etc/inside": "in", "d/a": "a", "d/sub/b": "b"}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"d/etc":    "/etc",
		"d/up":     "../../../../../..",
		"d/host":   c.dir,
		"d/canary": c.file,
		"d/loop":   "loop",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// treeStat runs Stat with and without openat2.
func treeStat(t *testing.T, root, p string, follow, openat2 bool) (PathInfo, error) {
	t.Helper()
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tr := &tree{root: fd, openat2: openat2 && hasOpenat2(fd)}
	return tr.stat(p, follow)
}

func TestStatStaysInRoot(t *testing.T) {
	c := newCanary(t)
	root := linkTree(t, c)
	for _, openat2 := range []bool{true, false} {
		for _, tc := range []struct {
			path   string
			follow bool
			want   PathInfo
			err    error
		}{
			{"/d/etc/inside", false, PathInfo{Path: "d/etc/inside", Exists: true, Size: 2}, nil},
			{"/d/etc", true, PathInfo{Path: "etc", Exists: true, IsDir: true}, nil},
			{"/d/etc", false, PathInfo{Path: "d/etc", Exists: true, Symlink: true}, nil},
			{"/d/up/etc/inside", false, PathInfo{Path: "d/up/etc/inside", Exists: true, Size: 2}, nil},
			{"../../../etc/inside", false, PathInfo{Path: "etc/inside", Exists: true, Size: 2}, nil},
			{"/d/up", true, PathInfo{Path: "", Exists: true, IsDir: true}, nil},
			{"/d/canary", true, PathInfo{Path: c.file[1:]}, errdefs.ErrNotFound},
			{"/d/host/canary", false, PathInfo{Path: "d/host/canary"}, errdefs.ErrNotFound},
			{"/d/missing", false, PathInfo{Path: "d/missing"}, nil},
			{"/d/loop", true, PathInfo{}, errdefs.ErrInvalidArgument},
		} {
			got, err := treeStat(t, root, tc.path, tc.follow, openat2)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Errorf("openat2=%v Stat(%q, %v): error %v, want %v", openat2, tc.path, tc.follow, err, tc.err)
				}
				continue
			}
			if err != nil || got != tc.want {
				t.Errorf("openat2=%v Stat(%q, %v) = %+v, %v; want %+v", openat2, tc.path, tc.follow, got, err, tc.want)
			}
		}
	}
	c.check(t)
}

func tarEntries(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			out[hdr.Name] = "-> " + hdr.Linkname
		case tar.TypeLink:
			out[hdr.Name] = "link " + hdr.Linkname
		default:
			out[hdr.Name] = string(data)
		}
	}
}

func TestWriteTree(t *testing.T) {
	c := newCanary(t)
	root := linkTree(t, c)
	if err := os.Link(filepath.Join(root, "d/a"), filepath.Join(root, "d/sub/a2")); err != nil {
		t.Fatal(err)
	}
	write := func(p, name string) (map[string]string, error) {
		var buf bytes.Buffer
		err := WriteTree(context.Background(), &buf, root, p, name)
		return tarEntries(t, buf.Bytes()), err
	}
	got, err := write("/d", "copy")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"copy/": "", "copy/a": "a", "copy/sub/": "", "copy/sub/b": "b", "copy/sub/a2": "link copy/a",
		"copy/etc": "-> /etc", "copy/up": "-> ../../../../../..", "copy/host": "-> " + c.dir,
		"copy/canary": "-> " + c.file, "copy/loop": "-> loop",
	}
	if !mapsEqual(got, want) {
		t.Errorf("WriteTree(/d, copy) = %v\nwant %v", got, want)
	}
	// Contents only, and a file through a link that stays inside.
	if got, err := write("/d/sub/", ""); err != nil || !slices.Equal(sortedKeys(got), []string{"a2", "b"}) {
		t.Errorf("WriteTree(/d/sub/, \"\") = %v, %v", got, err)
	}
	if got, err := write("/d/up/etc/inside", ""); err != nil || got["inside"] != "in" || len(got) != 1 {
		t.Errorf("WriteTree through ../..: %v, %v", got, err)
	}
	// A link to a host folder leads nowhere inside the root.
	if _, err := write("/d/host/canary", "x"); !errdefs.IsNotFound(err) {
		t.Errorf("WriteTree through a link to the host: %v, want not found", err)
	}
	c.check(t)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
