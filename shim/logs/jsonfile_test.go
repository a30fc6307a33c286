package logs

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readEntries(t *testing.T, path string) []Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q of %s is not a json-file entry: %v", sc.Text(), path, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCopyWritesOneEntryPerLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewWriter(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var tee strings.Builder
	before := time.Now().UTC()
	if err := w.Copy("stdout", strings.NewReader("hello\nworld\nno newline"), &tee); err != nil {
		t.Fatal(err)
	}
	if err := w.Copy("stderr", strings.NewReader("oops\n"), nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := readEntries(t, path)
	want := []Entry{{Log: "hello\n", Stream: "stdout"}, {Log: "world\n", Stream: "stdout"}, {Log: "no newline", Stream: "stdout"}, {Log: "oops\n", Stream: "stderr"}}
	if len(got) != len(want) {
		t.Fatalf("got %d entries %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].Log != want[i].Log || got[i].Stream != want[i].Stream {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
		if got[i].Time.Before(before.Add(-time.Second)) || got[i].Time.After(time.Now().Add(time.Second)) {
			t.Errorf("entry %d time %v is not the time of writing", i, got[i].Time)
		}
	}
	if tee.String() != "hello\nworld\nno newline" {
		t.Errorf("tee got %q", tee.String())
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), `"time":"`) || !strings.Contains(string(raw), `Z"}`) {
		t.Errorf("time is not RFC 3339 in UTC: %s", raw)
	}
}

func TestLongLinesAreSplit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewWriter(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", maxLine+100) + "\n"
	if err := w.Copy("stdout", strings.NewReader(long), nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got := readEntries(t, path)
	if len(got) != 2 {
		t.Fatalf("got %d entries, want the line split in 2", len(got))
	}
	if got[0].Log+got[1].Log != long {
		t.Errorf("split entries do not join to the line")
	}
}

func TestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewWriter(Options{Path: path, MaxSize: 200, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		if err := w.WriteEntry("stdout", []byte(strings.Repeat("a", 20)+"\n")); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteEntry("stdout", []byte("last\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("rotated file missing: %v", err)
		}
		if st.Size() > 200 {
			t.Errorf("%s is %d bytes, over max-size 200", p, st.Size())
		}
		if len(readEntries(t, p)) == 0 {
			t.Errorf("%s has no entries", p)
		}
	}
	if _, err := os.Stat(path + ".3"); !os.IsNotExist(err) {
		t.Errorf("more than max-file files kept: %v", err)
	}
	cur := readEntries(t, path)
	if cur[len(cur)-1].Log != "last\n" {
		t.Errorf("the newest entry is not in the current file: %+v", cur)
	}
}

func TestSingleFileIsTruncated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewWriter(Options{Path: path, MaxSize: 100, MaxFiles: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := w.WriteEntry("stdout", []byte("0123456789\n")); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if _, err := os.Stat(path + ".1"); !os.IsNotExist(err) {
		t.Errorf("max-file 1 kept a rotated file: %v", err)
	}
	if n := len(readEntries(t, path)); n == 0 || n >= 10 {
		t.Errorf("current file has %d entries, want it truncated", n)
	}
}

func TestAppendsToExistingLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	for i := 0; i < 2; i++ {
		w, err := NewWriter(Options{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteEntry("stdout", []byte("x\n")); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	if n := len(readEntries(t, path)); n != 2 {
		t.Errorf("got %d entries after two writers, want 2", n)
	}
}

// switchingReader calls at before each line it returns, so that a test can
// change the writer's file between lines.
type switchingReader struct {
	lines []string
	at    func(i int)
	i     int
}

func (r *switchingReader) Read(p []byte) (int, error) {
	if r.i == len(r.lines) {
		return 0, io.EOF
	}
	r.at(r.i)
	n := copy(p, r.lines[r.i])
	r.i++
	return n, nil
}

func TestCopyDropsLinesOnAFullDiskAndSaysSo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w, err := NewWriter(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	real := w.f
	r := &switchingReader{lines: []string{"a\n", "b\n", "c\n", "d\n"}, at: func(i int) {
		w.mu.Lock()
		defer w.mu.Unlock()
		switch i {
		case 1:
			w.f = full
		case 3:
			w.f = real
		}
	}}
	if err := w.Copy("stdout", r, nil); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Errorf("Copy over a full disk returned %v, want ENOSPC", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e Entry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("damaged entry %q: %v", l, err)
		}
		got = append(got, e.Log)
	}
	if len(got) != 3 || got[0] != "a\n" || !strings.HasPrefix(got[1], "berth: 2 lines of stdout were not logged:") || got[2] != "d\n" {
		t.Errorf("log after a full disk = %q", got)
	}
}
