package reference

import "testing"

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                      "docker.io/library/busybox:latest",
		"busybox:1.36":                 "docker.io/library/busybox:1.36",
		"my/busybox:v1":                "docker.io/my/busybox:v1",
		"localhost:5000/x":             "localhost:5000/x:latest",
		"docker.io/library/busybox:v2": "docker.io/library/busybox:v2",
	} {
		got, err := Normalize(in)
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
		if f := Familiar(got); in != "busybox" && in != "docker.io/library/busybox:v2" && f != in && f+":latest" != in && f != in+":latest" {
			t.Errorf("Familiar(%q) = %q", got, f)
		}
	}
	if _, err := Normalize("Busybox"); err == nil {
		t.Error("upper-case repository accepted")
	}
}

func TestRepoTag(t *testing.T) {
	repo, tag := RepoTag("docker.io/library/busybox:latest")
	if repo != "busybox" || tag != "latest" {
		t.Errorf("got %s %s", repo, tag)
	}
	repo, tag = RepoTag("sha256:0123456789012345678901234567890123456789012345678901234567890123")
	if repo != "<none>" || tag != "<none>" {
		t.Errorf("dangling: got %s %s", repo, tag)
	}
}
