package integration

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/mount"
)

// mountsUnder returns the mount points at or below dir, deepest first, from
// /proc/self/mountinfo (berthd and its children share the test's mount
// namespace).
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return out
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// checkNoMounts fails the test when mounts are left at or below dir, and
// detaches them so that removing dir cannot reach through them.
func checkNoMounts(t *testing.T, dir string) {
	t.Helper()
	left := mountsUnder(t, dir)
	if len(left) == 0 {
		return
	}
	t.Errorf("mounts left under %s: %v", dir, left)
	for _, mp := range left {
		if err := mount.Unmount(mp); err != nil {
			t.Errorf("detaching %s: %v", mp, err)
		}
	}
}

// tempMountDir returns a fresh folder to mount on; when the test ends it
// checks that nothing is mounted there any more (and detaches what is).
func tempMountDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "berth-it-mnt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		checkNoMounts(t, dir)
		os.RemoveAll(dir)
	})
	return dir
}
