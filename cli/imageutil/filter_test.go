package imageutil

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/images"
)

func TestMatchReference(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"busybox", "docker.io/library/busybox:latest", true},
		{"busybox", "docker.io/library/busybox:1.36", true},
		{"busybox:latest", "docker.io/library/busybox:latest", true},
		{"busybox:1.*", "docker.io/library/busybox:1.36", true},
		{"busybox:1.*", "docker.io/library/busybox:latest", false},
		{"busy*", "docker.io/library/busybox:latest", true},
		{"*box", "docker.io/my/busybox:v1", false}, // '*' does not cross '/'
		{"*/*box", "docker.io/my/busybox:v1", true},
		{"my/busybox", "docker.io/my/busybox:v1", true},
		{"docker.io/library/busybox", "docker.io/library/busybox:latest", false}, // familiar names only
		{"registry.local:5000/app", "registry.local:5000/app:1", true},
		{"alpine", "docker.io/library/busybox:latest", false},
		{"*", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", false},
	} {
		if got := MatchReference(c.pattern, c.name); got != c.want {
			t.Errorf("MatchReference(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

func TestFilter(t *testing.T) {
	named := Image{Image: images.Image{Name: "docker.io/library/busybox:latest"}, Details: &Details{}}
	cfg := &ocispec.Image{}
	cfg.Config.Labels = map[string]string{"org.example.team": "core"}
	named.Details.setConfig(cfg)
	other := Image{Image: images.Image{Name: "docker.io/library/alpine:3"}, Details: &Details{}}
	dangling := Image{Image: images.Image{Name: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}
	all := []Image{named, other, dangling}

	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{named.Name, other.Name, dangling.Name}},
		{[]string{"dangling=true"}, []string{dangling.Name}},
		{[]string{"dangling=false"}, []string{named.Name, other.Name}},
		{[]string{"reference=busybox", "reference=alpine:*"}, []string{named.Name, other.Name}},
		{[]string{"reference=busybox", "dangling=true"}, nil},
		{[]string{"label=org.example.team"}, []string{named.Name}},
		{[]string{"label=org.example.team=other"}, nil},
	} {
		f, err := ParseFilter(c.args)
		if err != nil {
			t.Fatalf("ParseFilter(%q): %v", c.args, err)
		}
		var got []string
		for _, img := range all {
			if f.Match(img) {
				got = append(got, img.Name)
			}
		}
		if len(got) != len(c.want) {
			t.Errorf("%q: got %q, want %q", c.args, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%q: got %q, want %q", c.args, got, c.want)
			}
		}
	}

	for _, bad := range [][]string{{"dangling=maybe"}, {"until=1h"}, {"reference"}, {"reference=[a"}, {"dangling=true", "dangling=false"}} {
		if _, err := ParseFilter(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseFilter(%q): err = %v, want invalid argument", bad, err)
		}
	}
}
