package command

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
)

func TestSplitCpArg(t *testing.T) {
	for arg, want := range map[string][2]string{
		"web:/etc/passwd": {"web", "/etc/passwd"},
		"web:rel":         {"web", "rel"},
		"/abs:path":       {"", "/abs:path"},
		"./web:x":         {"", "./web:x"},
		"file":            {"", "file"},
		"-":               {"", "-"},
	} {
		if c, p := splitCpArg(arg); c != want[0] || p != want[1] {
			t.Errorf("splitCpArg(%q) = %q, %q; want %q", arg, c, p, want)
		}
	}
	for _, c := range [][3]string{{"dir/", "/w/dir", "/w/dir/"}, {"dir/.", "/w/dir", "/w/dir/."}, {".", "/w", "/w/."}, {"f", "/w/f", "/w/f"}, {"/", "/", "/"}} {
		if got := keepTrailing(c[0], c[1]); got != c[2] {
			t.Errorf("keepTrailing(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}

func TestRewriteTar(t *testing.T) {
	tarOf := func(hdrs ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hdrs {
			tw.WriteHeader(h)
			if h.Size > 0 {
				tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			}
		}
		tw.Close()
		return buf.Bytes()
	}
	in := tarOf(
		&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755, Uid: 5, Gid: 6},
		&tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o600, Size: 3, Uid: 5, Gid: 6},
		&tar.Header{Name: "/d/h", Typeflag: tar.TypeLink, Linkname: "d/f"},
	)
	var out bytes.Buffer
	n, err := rewriteTar(&out, bytes.NewReader(in), "/tmp/dst", &owner{uid: 1, gid: 2})
	if err != nil || n != int64(len(in)) {
		t.Fatalf("rewriteTar: %d bytes, %v", n, err)
	}
	tr := tar.NewReader(&out)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %d:%d", h.Name, h.Linkname, h.Uid, h.Gid))
	}
	want := []string{"/tmp/dst/d/  1:2", "/tmp/dst/d/f  1:2", "/tmp/dst/d/h /tmp/dst/d/f 1:2"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("rewritten entries %q, want %q", got, want)
	}
	for _, bad := range []*tar.Header{
		{Name: "../x", Typeflag: tar.TypeReg},
		{Name: "a/../../x", Typeflag: tar.TypeReg},
		{Name: "l", Typeflag: tar.TypeLink, Linkname: "../../etc/shadow"},
	} {
		if _, err := rewriteTar(io.Discard, bytes.NewReader(tarOf(bad)), "/tmp/dst", nil); !errdefs.IsInvalidArgument(err) {
			t.Errorf("rewriteTar of %q -> %q: %v, want invalid argument", bad.Name, bad.Linkname, err)
		}
	}
}

func TestExportRefusesTerminal(t *testing.T) {
	c := &CLI{Streams: Streams{Out: io.Discard, IsTerminal: func(any) bool { return true }}}
	err := runExport(context.Background(), c, "", "web")
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "cowardly refusing to save to a terminal") {
		t.Errorf("export to a terminal: %v", err)
	}
}
