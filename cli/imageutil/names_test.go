package imageutil

import (
	"testing"

	"github.com/berth-engine/berth/internal/reference"
)

func TestRepoTagAgreesWithReference(t *testing.T) {
	for _, name := range []string{
		"docker.io/library/busybox:latest",
		"docker.io/library/busybox:1.36.1",
		"docker.io/my/busybox:v1",
		"docker.io/library/a/b:c",
		"docker.io/libraryx/busybox:latest",
		"registry.local:5000/team/app:v1",
		"registry.local:5000/app:v1",
		"localhost/app:1",
		"localhost:5000/app:1",
		"quay.io/org/repo:TAG_1",
		"docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"docker.io/library/busybox:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"busybox",
		"busybox:latest",
		"my/busybox",
		"docker.io/library/busybox",
		"",
	} {
		wr, wt := reference.RepoTag(name)
		if name == "" {
			wr, wt = "<none>", "<none>"
		}
		r, tg := RepoTag(name)
		if r != wr || tg != wt {
			t.Errorf("RepoTag(%q) = %q, %q; reference.RepoTag gives %q, %q", name, r, tg, wr, wt)
		}
	}
}
