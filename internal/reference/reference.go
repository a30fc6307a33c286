// Package reference normalises image references the way Docker does:
// "busybox" is "docker.io/library/busybox:latest". The image store keeps
// normalised names; the CLI shows familiar ones.
package reference

import (
	"fmt"
	"strings"

	distref "github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"

	"github.com/berth-engine/berth/internal/errdefs"
)

// Normalize returns the full name of ref, with ":latest" added when ref has
// neither tag nor digest.
func Normalize(ref string) (string, error) {
	named, err := distref.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("invalid reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return distref.TagNameOnly(named).String(), nil
}

// Familiar returns the short form of a normalised name, as Docker prints it
// ("busybox:latest", "my/app:v1", "registry.local:5000/x:1").
func Familiar(name string) string {
	named, err := distref.ParseNormalizedNamed(name)
	if err != nil {
		return name
	}
	return distref.FamiliarString(named)
}

// RepoTag splits a name into its familiar repository and its tag or digest,
// for the REPOSITORY and TAG columns. A name that is not a reference (a
// dangling image's digest) gives "<none>", "<none>".
func RepoTag(name string) (repo, tag string) {
	named, err := distref.ParseNormalizedNamed(name)
	if err != nil || IsDigest(name) {
		return "<none>", "<none>"
	}
	repo = distref.FamiliarName(named)
	switch r := named.(type) {
	case distref.Tagged:
		return repo, r.Tag()
	case distref.Digested:
		return repo, "<none>"
	}
	return repo, "<none>"
}

// IsDigest reports whether s is a bare digest ("sha256:...").
func IsDigest(s string) bool {
	_, err := digest.Parse(s)
	return err == nil
}

// IsIDPrefix reports whether s could be a (possibly shortened, possibly
// "sha256:"-prefixed) hex image ID rather than a name.
func IsIDPrefix(s string) bool {
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
