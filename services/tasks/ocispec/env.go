package ocispec

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/berth-engine/berth/internal/errdefs"
)

// LookupEnvFunc looks up a variable in the caller's environment, like
// os.LookupEnv. Generate uses it for a bare `-e NAME`.
type LookupEnvFunc func(name string) (string, bool)

// envKey returns the name part of a NAME=value entry.
func envKey(e string) string {
	k, _, _ := strings.Cut(e, "=")
	return k
}

// ResolveEnv expands bare NAME entries (from `-e NAME` or an env file line
// without '=') with lookup, as the Docker CLI does. A bare name that lookup
// does not know stays bare: MergeEnv then treats it as "unset NAME".
func ResolveEnv(env []string, lookup LookupEnvFunc) ([]string, error) {
	out := make([]string, 0, len(env))
	for _, e := range env {
		k, _, hasValue := strings.Cut(e, "=")
		if k == "" {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
				"invalid environment variable %q: the name is empty; use NAME=value", e)
		}
		if !hasValue && lookup != nil {
			if v, ok := lookup(k); ok {
				e = k + "=" + v
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// MergeEnv applies overrides to base by name, Docker's way: NAME=value
// replaces the entry of the same name in place or is appended, and a bare NAME
// removes it. When overrides set one name twice, the last one wins (Docker
// would pass both and the process would see the first). Neither input is
// modified.
func MergeEnv(base, overrides []string) []string {
	out := make([]string, 0, len(base)+len(overrides))
	index := make(map[string]int, len(base)+len(overrides))
	for _, e := range append(append([]string(nil), base...), overrides...) {
		k, _, hasValue := strings.Cut(e, "=")
		i, exists := index[k]
		switch {
		case !hasValue && exists:
			out[i] = "" // removed; compacted below
			delete(index, k)
		case !hasValue:
			// Unset of something not set: nothing to do.
		case exists:
			out[i] = e
		default:
			index[k] = len(out)
			out = append(out, e)
		}
	}
	compact := out[:0]
	for _, e := range out {
		if e != "" {
			compact = append(compact, e)
		}
	}
	return compact
}

// ParseEnvFile reads a Docker --env-file: one NAME=value per line, the value
// taken verbatim; blank lines and lines starting with '#' are skipped; leading
// whitespace is trimmed; a line with only NAME is returned bare, to be looked
// up by ResolveEnv. name is used in error messages.
func ParseEnvFile(name string, r io.Reader) ([]string, error) {
	var lines []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		b := sc.Bytes()
		if n == 1 {
			b = bytes.TrimPrefix(b, []byte{0xEF, 0xBB, 0xBF}) // UTF-8 BOM
		}
		if !utf8.Valid(b) {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
				"env file %s: line %d is not valid UTF-8: save the file as UTF-8", name, n)
		}
		line := strings.TrimLeftFunc(string(b), unicode.IsSpace)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, hasValue := strings.Cut(line, "=")
		if k == "" {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
				"env file %s: line %d has no variable name: write NAME=value", name, n)
		}
		if strings.ContainsFunc(k, unicode.IsSpace) {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
				"env file %s: line %d: variable %q contains whitespace: write NAME=value with no spaces around the name", name, n, k)
		}
		if hasValue {
			lines = append(lines, k+"="+v)
		} else {
			lines = append(lines, k)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "env file %s: %v", name, err)
	}
	return lines, nil
}
