package command

import (
	"bytes"
	"testing"
)

func TestParseDetachKeys(t *testing.T) {
	for in, want := range map[string][]byte{
		"":              {16, 17},
		"ctrl-p,ctrl-q": {16, 17},
		"ctrl-a":        {1},
		"CTRL-Z,x":      {26, 'x'},
		"ctrl-@,ctrl-[": {0, 27},
		"ctrl-_,e":      {31, 'e'},
	} {
		got, err := parseDetachKeys(in)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("parseDetachKeys(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"ctrl-1", "ab", "ctrl-", "ctrl-p,", "alt-x"} {
		if _, err := parseDetachKeys(bad); err == nil {
			t.Errorf("parseDetachKeys(%q) succeeded", bad)
		}
	}
}

func TestDetachScanner(t *testing.T) {
	keys := []byte{16, 17}
	for _, tc := range []struct {
		name   string
		reads  [][]byte
		out    string
		detach bool
	}{
		{"plain", [][]byte{[]byte("ls\r")}, "ls\r", false},
		{"one read", [][]byte{[]byte("ab\x10\x11cd")}, "ab", true},
		{"split", [][]byte{[]byte("a\x10"), []byte("\x11")}, "a", true},
		{"not it", [][]byte{[]byte("\x10x")}, "\x10x", false},
		{"held then not", [][]byte{[]byte("\x10"), []byte("y")}, "\x10y", false},
		{"restart", [][]byte{[]byte("\x10\x10\x11")}, "\x10", true},
	} {
		s := &detachScanner{keys: keys}
		var out []byte
		detach := false
		for _, r := range tc.reads {
			o, d := s.scan(r)
			out = append(out, o...)
			if d {
				detach = true
				break
			}
		}
		if !detach {
			out = append(out, s.flush()...)
		}
		if string(out) != tc.out || detach != tc.detach {
			t.Errorf("%s: out %q detach %v; want %q %v", tc.name, out, detach, tc.out, tc.detach)
		}
	}
}
