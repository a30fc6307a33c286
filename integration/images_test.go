package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

type inspectedImage struct {
	ID       string `json:"Id"`
	RepoTags []string
	Os       string
	RootFS   struct{ Layers []string }
}

func inspect(t *testing.T, d *daemon, image string) inspectedImage {
	t.Helper()
	var got []inspectedImage
	if err := json.Unmarshal([]byte(d.must("image", "inspect", image)), &got); err != nil {
		t.Fatalf("image inspect %s: %v", image, err)
	}
	if len(got) != 1 {
		t.Fatalf("image inspect %s: %d results", image, len(got))
	}
	return got[0]
}

func TestLoadListTagRemove(t *testing.T) {
	d := startDaemon(t)

	out := d.must("load", "-i", testImage("busybox-docker.tar"))
	if !strings.Contains(out, "Loaded image: busybox:latest") {
		t.Fatalf("load printed %q", out)
	}
	img := inspect(t, d, "busybox")
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(img.ID) || img.Os != "linux" || !slices.Contains(img.RepoTags, "busybox:latest") {
		t.Fatalf("unexpected inspect result %+v", img)
	}
	if got := strings.TrimSpace(d.must("image", "inspect", "-f", "{{.Os}}", "busybox")); got != "linux" {
		t.Errorf("inspect -f printed %q", got)
	}

	table := d.must("images")
	if !regexp.MustCompile(`REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE`).MatchString(table) {
		t.Errorf("images header: %q", table)
	}
	shortID := strings.TrimPrefix(img.ID, "sha256:")[:12]
	if !regexp.MustCompile(`busybox\s+latest\s+` + shortID).MatchString(table) {
		t.Errorf("images has no busybox row with ID %s: %q", shortID, table)
	}
	if got := strings.TrimSpace(d.must("images", "-q", "--no-trunc")); got != img.ID {
		t.Errorf("images -q --no-trunc = %q, want %q", got, img.ID)
	}

	// The same image from stdin and as an OCI layout.
	data, err := os.ReadFile(testImage("busybox-docker.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := d.berthIn(data, "load"); code != 0 || !strings.Contains(out, "busybox:latest") {
		t.Fatalf("load from stdin: %d %q %q", code, out, errOut)
	}
	d.must("load", "-i", testImage("busybox-oci.tar"))
	if inspect(t, d, "busybox:oci").ID != img.ID {
		t.Errorf("the OCI and docker archives of one image have different IDs")
	}

	// Tags by name and by ID prefix.
	d.must("tag", "busybox", "my/busybox:v1")
	d.must("tag", shortID, "other:1")
	table = d.must("images")
	for _, row := range []string{`my/busybox\s+v1\s+` + shortID, `other\s+1\s+` + shortID} {
		if !regexp.MustCompile(row).MatchString(table) {
			t.Errorf("images lacks %s: %q", row, table)
		}
	}
	if got := d.must("images", "--filter", "reference=my/*", "--format", "{{.Repository}}:{{.Tag}}"); strings.TrimSpace(got) != "my/busybox:v1" {
		t.Errorf("reference filter gave %q", got)
	}

	blobs := d.blobs()
	if out := d.must("rmi", "my/busybox:v1"); !strings.Contains(out, "Untagged: my/busybox:v1") || strings.Contains(out, "Deleted") {
		t.Errorf("rmi of one of several names printed %q", out)
	}
	if !slices.Equal(d.blobs(), blobs) {
		t.Errorf("untagging one name removed blobs")
	}
	if _, errOut, code := d.berth("rmi", shortID); code == 0 || !strings.Contains(errOut, "must be forced") {
		t.Errorf("rmi by ID of an image with several names: exit %d, %q", code, errOut)
	}
	if _, errOut, code := d.berth("rmi", "nosuch:image"); code == 0 || !strings.Contains(errOut, "No such image") {
		t.Errorf("rmi of an unknown image: exit %d, %q", code, errOut)
	}
	out = d.must("rmi", "-f", shortID)
	if !strings.Contains(out, "Deleted: "+img.ID) {
		t.Errorf("rmi -f printed %q", out)
	}
	if got := d.must("images", "-q"); got != "" {
		t.Errorf("images left after rmi: %q", got)
	}
	if b := d.blobs(); len(b) != 0 {
		t.Errorf("blobs left after the last image was removed: %v", b)
	}
}

// TestSaveInteroperates saves with berth, copies with skopeo through an OCI
// directory and back, loads the result and checks that nothing changed.
func TestSaveInteroperates(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo is not installed")
	}
	d := startDaemon(t)
	d.must("load", "-i", testImage("busybox-docker.tar"))
	d.must("load", "-i", testImage("layers-docker.tar"))
	orig := inspect(t, d, "layers")

	dir := t.TempDir()
	saved := filepath.Join(dir, "saved.tar")
	d.must("save", "-o", saved, "busybox", "layers:latest")

	// docker-archive -> OCI directory -> docker-archive: the image ID and the layers stay.
	skopeo(t, "copy", "docker-archive:"+saved+":layers:latest", "oci:"+filepath.Join(dir, "oci")+":layers")
	back := filepath.Join(dir, "back.tar")
	skopeo(t, "copy", "oci:"+filepath.Join(dir, "oci")+":layers", "docker-archive:"+back+":layers:back")
	d.must("load", "-i", back)
	got := inspect(t, d, "layers:back")
	if got.ID != orig.ID || !slices.Equal(got.RootFS.Layers, orig.RootFS.Layers) {
		t.Errorf("after skopeo round trip: %+v, want %+v", got, orig)
	}

	// An OCI image read back as an OCI archive keeps its manifest digest too
	// (a Docker manifest would be converted to OCI on the way).
	d.must("load", "-i", testImage("layers-oci.tar"))
	ociTarget := d.must("images", "--digests", "--format", "{{.Digest}}", "layers:oci")
	single := filepath.Join(dir, "single.tar")
	d.must("save", "-o", single, "layers:oci")
	skopeo(t, "copy", "oci-archive:"+single, "oci:"+filepath.Join(dir, "oci2")+":x")
	back2 := filepath.Join(dir, "back2.tar")
	skopeo(t, "copy", "oci:"+filepath.Join(dir, "oci2")+":x", "oci-archive:"+back2+":layers:back-oci")
	d.must("load", "-i", back2)
	if got := d.must("images", "--digests", "--format", "{{.Digest}}", "layers:back-oci"); got != ociTarget {
		t.Errorf("manifest digest changed across an OCI round trip: %q, want %q", got, ociTarget)
	}

	// Saving twice gives the same bytes.
	again := filepath.Join(dir, "again.tar")
	d.must("save", "-o", again, "busybox", "layers:latest")
	if fileDigest(t, saved) != fileDigest(t, again) {
		t.Errorf("two saves of the same images differ")
	}
}

func skopeo(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("skopeo", append([]string{"--insecure-policy"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, out)
	}
}

func fileDigest(t *testing.T, path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
