package imageutil

import (
	"strings"

	"github.com/berth-engine/berth/internal/reference"
)

// RepoTag splits an image record name into the REPOSITORY and TAG columns
// ("docker.io/library/busybox:latest" is "busybox", "latest"), as
// reference.RepoTag does. Names that the store holds in normalised form
// take a path without regular expressions: a listing splits thousands.
func RepoTag(name string) (repo, tag string) {
	if IsDangling(name) {
		return "<none>", "<none>"
	}
	slash := strings.IndexByte(name, '/')
	if slash < 0 || strings.ContainsAny(name, "@") || !isDomain(name[:slash]) {
		return reference.RepoTag(name)
	}
	colon := strings.LastIndexByte(name, ':')
	if colon < slash {
		return reference.RepoTag(name) // no tag: not normalised
	}
	repo, tag = name[:colon], name[colon+1:]
	if !validTag(tag) || strings.Contains(repo[slash:], ":") {
		return reference.RepoTag(name)
	}
	if rest, ok := strings.CutPrefix(repo, "docker.io/"); ok {
		repo = rest
		if r, ok := strings.CutPrefix(rest, "library/"); ok && !strings.Contains(r, "/") {
			repo = r
		}
	}
	return repo, tag
}

// isDomain reports whether the first component of a normalised name is a
// registry host, as distribution/reference decides it.
func isDomain(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost" || strings.ToLower(s) != s
}

func validTag(t string) bool {
	if t == "" || len(t) > 128 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
