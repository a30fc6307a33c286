package archive

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/tools/mkimage/imagegen"
)

// skopeo runs skopeo, skipping the test when it is not installed.
func skopeo(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed")
	}
	// No policy.json is needed with --insecure-policy; keep skopeo's
	// temporary files in the test's directory.
	cmd := exec.Command(bin, append([]string{"--insecure-policy"}, args...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, out)
	}
}

func configDigest(t *testing.T, cs *labelStore, img images.Image) string {
	t.Helper()
	return readManifest(t, cs, img.Target).Config.Digest.String()
}

// TestSkopeoInterop: berth's export is read by skopeo both as a
// docker-archive and as an oci-archive, and what skopeo writes from it, in
// both formats, imports back with the same config.
func TestSkopeoInterop(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo is not installed")
	}
	// Uncompressed layers (from a docker save) and gzip layers (from an OCI
	// layout) both end up in manifest.json.
	for _, format := range []imagegen.Format{imagegen.FormatDocker, imagegen.FormatOCI} {
		t.Run(string(format), func(t *testing.T) {
			dir := t.TempDir()
			cs := newStore(t)
			imgs := importBytes(t, cs, archiveOf(t, format, imagegen.Named{Image: layersImage(t), Names: []string{"busybox"}}))
			want := configDigest(t, cs, imgs[0])
			saved := filepath.Join(dir, "saved.tar")
			if err := os.WriteFile(saved, exportBytes(t, cs, imgs), 0o644); err != nil {
				t.Fatal(err)
			}

			ociDir := filepath.Join(dir, "oci")
			skopeo(t, "copy", "docker-archive:"+saved, "oci:"+ociDir+":busybox:latest")
			back := filepath.Join(dir, "back.tar")
			skopeo(t, "copy", "oci:"+ociDir+":busybox:latest", "docker-archive:"+back+":busybox:latest")
			ociArchive := filepath.Join(dir, "back-oci.tar")
			skopeo(t, "copy", "oci-archive:"+saved, "oci-archive:"+ociArchive+":busybox:latest")

			for _, p := range []string{back, ociArchive} {
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				cs2 := newStore(t)
				got := importBytes(t, cs2, data)
				if len(got) != 1 || got[0].Name != "docker.io/library/busybox:latest" {
					t.Fatalf("%s: imported %+v, want one busybox:latest", filepath.Base(p), got)
				}
				if c := configDigest(t, cs2, got[0]); c != want {
					t.Errorf("%s: config %s, want %s", filepath.Base(p), c, want)
				}
				if p == ociArchive && got[0].Target.MediaType != ocispec.MediaTypeImageManifest {
					t.Errorf("oci-archive imported as %s", got[0].Target.MediaType)
				}
				if cs2.labels[got[0].Target.Digest][LabelGCRefConfig] != want {
					t.Errorf("%s: manifest labels %v", filepath.Base(p), cs2.labels[got[0].Target.Digest])
				}
			}
		})
	}
}
