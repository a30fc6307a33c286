package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testTime is the time stamped on the entries of test tars.
var testTime = time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)

// ent is an entry of a test tar.
type ent struct {
	hdr  tar.Header
	data string
}

func dirEnt(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode}}
}

func fileEnt(name string, mode int64, data string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}, data: data}
}

func symlinkEnt(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlinkEnt(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}}
}

func whiteoutEnt(dir, name string) ent {
	return fileEnt(filepath.Join(dir, WhiteoutPrefix+name), 0o644, "")
}

func opaqueEnt(dir string) ent {
	return fileEnt(filepath.Join(dir, WhiteoutOpaqueDir), 0o644, "")
}

// mkTar writes the entries, in the given order, as a tar.
func mkTar(t testing.TB, entries ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.ModTime.IsZero() {
			hdr.ModTime = testTime
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("writing test tar header %s: %v", hdr.Name, err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			t.Fatalf("writing test tar data %s: %v", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func apply(t testing.TB, root string, data []byte, opts ...ApplyOpt) {
	t.Helper()
	n, err := Apply(context.Background(), root, bytes.NewReader(data), opts...)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if n != int64(len(data)) {
		t.Fatalf("Apply read %d bytes of %d", n, len(data))
	}
}

// fileState is what tree comparisons look at for one path.
type fileState struct {
	Type   string
	Mode   os.FileMode
	UID    int
	GID    int
	Size   int64
	SHA256 string
	Link   string
	Rdev   uint64
	Xattrs map[string]string
}

func (s fileState) String() string {
	return fmt.Sprintf("%s %v %d:%d size=%d sha=%.12s link=%q rdev=%d xattrs=%v",
		s.Type, s.Mode, s.UID, s.GID, s.Size, s.SHA256, s.Link, s.Rdev, s.Xattrs)
}

// treeState records every path under root except root itself.
func treeState(t testing.TB, root string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		s := fileState{Mode: fi.Mode(), UID: int(st.Uid), GID: int(st.Gid)}
		switch {
		case fi.Mode().IsRegular():
			s.Type, s.Size = "file", fi.Size()
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			s.SHA256 = hex.EncodeToString(sum[:])
		case fi.IsDir():
			s.Type = "dir"
		case fi.Mode()&os.ModeSymlink != 0:
			s.Type = "symlink"
			if s.Link, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode()&os.ModeNamedPipe != 0:
			s.Type = "fifo"
		case fi.Mode()&os.ModeDevice != 0:
			s.Type, s.Rdev = "device", st.Rdev
		default:
			s.Type = "other"
		}
		xattrs, err := pathXattrs(p)
		if err != nil {
			return err
		}
		for k, v := range xattrs {
			if s.Xattrs == nil {
				s.Xattrs = map[string]string{}
			}
			s.Xattrs[k] = string(v)
		}
		out[filepath.ToSlash(rel)] = s
		return nil
	})
	if err != nil {
		t.Fatalf("reading tree %s: %v", root, err)
	}
	return out
}

// diffStates describes how two tree states differ, "" when they do not.
func diffStates(want, got map[string]fileState) string {
	var lines []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			lines = append(lines, fmt.Sprintf("missing %s (%v)", p, w))
		case g.String() != w.String():
			lines = append(lines, fmt.Sprintf("%s:\n  want %v\n  got  %v", p, w, g))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			lines = append(lines, fmt.Sprintf("unexpected %s (%v)", p, g))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func lstat(t testing.TB, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// resolvers runs f with path resolution by openat2 (when the kernel has it)
// and by the user-space walk.
func resolvers(t *testing.T, f func(t *testing.T, opts ...ApplyOpt)) {
	t.Run("openat2", func(t *testing.T) { f(t) })
	t.Run("walk", func(t *testing.T) {
		f(t, func(o *ApplyOpts) { o.noOpenat2 = true })
	})
}

// pathXattrs reads the extended attributes of p, not following a final
// symbolic link, without overlay ones.
func pathXattrs(p string) (map[string][]byte, error) {
	names, err := readXattrList(func(b []byte) (int, error) { return unix.Llistxattr(p, b) })
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, k := range names {
		if isOverlayXattr(k) {
			continue
		}
		v, err := readXattrValue(func(b []byte) (int, error) { return unix.Lgetxattr(p, k, b) })
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}
