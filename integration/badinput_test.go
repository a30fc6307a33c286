package integration

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestLoadRejectsBadInput feeds broken archives to 'berth load' and checks that
// each gets a clear error and leaves the store as it was.
func TestLoadRejectsBadInput(t *testing.T) {
	d := startDaemon(t)
	d.must("load", "-i", testImage("busybox-docker.tar"))
	blobsBefore, imagesBefore := d.blobs(), d.must("images", "-q", "--no-trunc")

	good := readTar(t, testImage("busybox-oci.tar"))
	layer := ociLayerName(t, good)
	full, err := os.ReadFile(testImage("busybox-docker.tar"))
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		archive []byte
		want    string // a word the error must contain
	}{
		{"truncated tar", full[:len(full)/2], "truncated"},
		{"digest mismatch", writeTar(t, mapEntries(good, func(e tarEntry) tarEntry {
			if e.hdr.Name == layer {
				e.data = append([]byte(nil), e.data...)
				e.data[len(e.data)/2] ^= 0xff
			}
			return e
		})), "digest"},
		{"manifest names a missing blob", writeTar(t, slices.DeleteFunc(slices.Clone(good), func(e tarEntry) bool {
			return e.hdr.Name == layer
		})), strings.TrimPrefix(layer, "blobs/sha256/")[:12]},
		{"unknown media type", unknownMediaType(t), "application/x-berth-unknown"},
		{"entry with ..", writeTar(t, append(slices.Clone(good), fileEntry("../escape", []byte("x")))), ".."},
		{"declared size far larger than the data", oversized(t), "truncated"},
		{"tar that is not an image", writeTar(t, []tarEntry{fileEntry("hello.txt", []byte("hello"))}), "not an image"},
		{"not a tar at all", randomBytes(t, 4096), "archive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := d.berthIn(tc.archive, "load")
			if code == 0 {
				t.Fatalf("load succeeded")
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("error %q does not mention %q", errOut, tc.want)
			}
			if strings.Count(strings.TrimSpace(errOut), "\n") > 2 {
				t.Errorf("error is not short: %q", errOut)
			}
			if got := d.blobs(); !slices.Equal(got, blobsBefore) {
				t.Errorf("blobs changed: %v, want %v", got, blobsBefore)
			}
			if got := d.ingests(); len(got) != 0 {
				t.Errorf("ingests left: %v", got)
			}
			if got := d.must("images", "-q", "--no-trunc"); got != imagesBefore {
				t.Errorf("images changed: %q, want %q", got, imagesBefore)
			}
		})
	}
}

// ociLayerName returns the tar entry name of the first layer of the image in an OCI layout.
func ociLayerName(t *testing.T, entries []tarEntry) string {
	t.Helper()
	blob := func(dgst string) []byte {
		for _, e := range entries {
			if e.hdr.Name == "blobs/sha256/"+strings.TrimPrefix(dgst, "sha256:") {
				return e.data
			}
		}
		t.Fatalf("blob %s not in archive", dgst)
		return nil
	}
	var index struct{ Manifests []struct{ Digest string } }
	for _, e := range entries {
		if e.hdr.Name == "index.json" {
			if err := json.Unmarshal(e.data, &index); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(index.Manifests) == 0 {
		t.Fatal("no index.json in the OCI archive")
	}
	var manifest struct{ Layers []struct{ Digest string } }
	if err := json.Unmarshal(blob(index.Manifests[0].Digest), &manifest); err != nil {
		t.Fatal(err)
	}
	return "blobs/sha256/" + strings.TrimPrefix(manifest.Layers[0].Digest, "sha256:")
}

func mapEntries(entries []tarEntry, f func(tarEntry) tarEntry) []tarEntry {
	out := make([]tarEntry, len(entries))
	for i, e := range entries {
		out[i] = f(e)
	}
	return out
}

// unknownMediaType is an OCI layout whose index points at a blob of a media type nobody knows.
func unknownMediaType(t *testing.T) []byte {
	blob := []byte(`{"hello":"world"}`)
	sum := sha256.Sum256(blob)
	hexSum := hex.EncodeToString(sum[:])
	index := `{"schemaVersion":2,"manifests":[{"mediaType":"application/x-berth-unknown","digest":"sha256:` + hexSum +
		`","size":` + strconv.Itoa(len(blob)) + `,"annotations":{"io.containerd.image.name":"docker.io/library/odd:latest"}}]}`
	return writeTar(t, []tarEntry{
		fileEntry("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)),
		fileEntry("index.json", []byte(index)),
		fileEntry("blobs/sha256/"+hexSum, blob),
	})
}

// oversized is a tar whose blob entry declares 1 GiB but holds a few bytes.
func oversized(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + strings.Repeat("ab", 32), Mode: 0o644, Typeflag: tar.TypeReg, Size: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte("a few bytes")); err != nil {
		t.Fatal(err)
	}
	// No Close: the archive ends where the data does.
	_ = tw.Flush() // it reports the missing bytes, which is the point
	return buf.Bytes()
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
