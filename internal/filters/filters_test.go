package filters

import "testing"

type object map[string]string

func (o object) Field(path []string) (string, bool) {
	key := path[0]
	for _, p := range path[1:] {
		key += "." + p
	}
	v, ok := o[key]
	return v, ok
}

func TestMatch(t *testing.T) {
	obj := object{"name": "docker.io/library/busybox:latest", "labels.berth.io/kind": "test", "labels.app": ""}
	for _, tc := range []struct {
		filters []string
		want    bool
	}{
		{nil, true},
		{[]string{"name==docker.io/library/busybox:latest"}, true},
		{[]string{"name!=docker.io/library/busybox:latest"}, false},
		{[]string{"name~=busybox"}, true},
		{[]string{`name~=/^docker\.io/`}, true},
		{[]string{`labels."berth.io/kind"==test`}, true},
		{[]string{`labels."berth.io/kind"==test,name~=alpine`}, false},
		{[]string{`name~=alpine`, `labels.app`}, true},
		{[]string{`labels.missing`}, false},
		{[]string{`labels.missing!=x`}, true},
		{[]string{`name=="docker.io/library/busybox:latest"`}, true},
	} {
		f, err := Parse(tc.filters...)
		if err != nil {
			t.Fatalf("%q: %v", tc.filters, err)
		}
		if got := f.Match(obj); got != tc.want {
			t.Errorf("%q: got %v, want %v", tc.filters, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{"==x", `labels."unterminated==x`, "name~=(", "name==a,", ".x"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
