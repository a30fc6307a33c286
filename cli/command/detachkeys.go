package command

import (
	"strings"

	"github.com/berth-engine/berth/internal/errdefs"
)

// defaultDetachKeys is Docker's detach sequence: ctrl-p, ctrl-q.
const defaultDetachKeys = "ctrl-p,ctrl-q"

// parseDetachKeys reads a detach sequence in Docker's syntax: keys
// separated by commas, each a single character or ctrl-<x> with x one of
// a-z @ [ \ ] ^ _. Empty means the default.
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		s = defaultDetachKeys
	}
	var keys []byte
	for _, k := range strings.Split(s, ",") {
		if len(k) == 1 {
			keys = append(keys, k[0])
			continue
		}
		lk := strings.ToLower(k)
		if rest, ok := strings.CutPrefix(lk, "ctrl-"); ok && len(rest) == 1 {
			switch x := rest[0]; {
			case x >= 'a' && x <= 'z':
				keys = append(keys, x-'a'+1)
				continue
			case x == '@', x == '[', x == '\\', x == ']', x == '^', x == '_':
				keys = append(keys, x-'@')
				continue
			}
		}
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"invalid detach keys %q: unknown key %q: give keys separated by commas, each a single character or ctrl-<a-z, @, [, \\, ], ^ or _>", s, k)
	}
	return keys, nil
}

// detachScanner finds the detach sequence in a stream of keystrokes. Bytes
// that may start the sequence are held back until the next bytes tell;
// those that turn out not to be it are passed on then.
type detachScanner struct {
	keys []byte
	held int // how many bytes of keys the stream ends with
}

// scan returns the bytes of in to pass on and whether the sequence is
// complete; bytes after the sequence are dropped.
func (s *detachScanner) scan(in []byte) (out []byte, detach bool) {
	out = make([]byte, 0, len(in)+s.held)
	for _, b := range in {
		if b == s.keys[s.held] {
			s.held++
			if s.held == len(s.keys) {
				s.held = 0
				return out, true
			}
			continue
		}
		if s.held > 0 {
			out = append(out, s.keys[:s.held]...)
			s.held = 0
			if b == s.keys[0] {
				s.held = 1
				continue
			}
		}
		out = append(out, b)
	}
	return out, false
}

// flush returns the bytes held back, at the end of the stream.
func (s *detachScanner) flush() []byte {
	out := append([]byte(nil), s.keys[:s.held]...)
	s.held = 0
	return out
}
