package identifiers

import "testing"

func TestValidate(t *testing.T) {
	for _, ok := range []string{"default", "k8s.io", "a", "team-1_x"} {
		if err := Validate(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "../x", "a..b", "-a", "a/b", "a b", string(make([]byte, 80))} {
		if err := Validate(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
