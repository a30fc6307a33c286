package containers

import (
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
)

func TestValidateID(t *testing.T) {
	if err := ValidateID(strings.Repeat("0123456789abcdef", 4)); err != nil {
		t.Errorf("valid ID: %v", err)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("a", 63), strings.Repeat("a", 65), strings.Repeat("A", 64), strings.Repeat("z", 64)} {
		if err := ValidateID(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ID %q: %v, want invalid argument", bad, err)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"web", "a1", "My_app.v2-x", "0abc", "a-"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("name %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a", "/web", "-web", "_web", ".web", "a b", "a/b", "wéb", strings.Repeat("a", 254)} {
		if err := ValidateName(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("name %q: %v, want invalid argument", bad, err)
		}
	}
}
