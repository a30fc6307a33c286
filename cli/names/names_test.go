package names

import (
	"regexp"
	"testing"

	"github.com/berth-engine/berth/services/containers"
)

func TestRandomNamesAreValidAndVaried(t *testing.T) {
	plain := regexp.MustCompile(`^[a-z]+_[a-z]+$`)
	withDigit := regexp.MustCompile(`^[a-z]+_[a-z]+[0-9]$`)
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		n := Random(0)
		if !plain.MatchString(n) {
			t.Fatalf("Random(0) = %q, want adjective_surname", n)
		}
		if err := containers.ValidateName(n); err != nil {
			t.Fatalf("Random(0) = %q is not a valid container name: %v", n, err)
		}
		seen[n] = true
		if r := Random(1); !withDigit.MatchString(r) {
			t.Fatalf("Random(1) = %q, want a trailing digit", r)
		}
	}
	if len(seen) < 50 {
		t.Fatalf("200 names gave only %d distinct ones", len(seen))
	}
}
