package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{"123": 123, "8MiB": 8 << 20, "100MB": 100_000_000, "2KiB": 2048, "5B": 5} {
		var s sizeFlag
		if err := s.Set(in); err != nil || int64(s) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"", "MB", "-1", "1.5MB", "ten"} {
		var s sizeFlag
		if err := s.Set(in); err == nil {
			t.Errorf("Set(%q) accepted", in)
		}
	}
}

func TestRunWritesArchive(t *testing.T) {
	out := filepath.Join(t.TempDir(), "random.tar")
	var stderr bytes.Buffer
	if err := run([]string{"-format", "oci", "-o", out, "random", "-layers", "2", "-size", "10KiB", "-name", "r:1"}, io.Discard, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var index []byte
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == "index.json" {
			index, _ = io.ReadAll(tr)
		}
	}
	if !strings.Contains(string(index), `"io.containerd.image.name":"docker.io/library/r:1"`) {
		t.Errorf("index.json = %s", index)
	}
}

func TestRunRejectsBadArguments(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nonsense"},
		{"-format", "zip", "random"},
		{"random", "extra"},
	} {
		if err := run(args, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
