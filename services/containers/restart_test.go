package containers

import (
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
)

func TestParseRestartPolicy(t *testing.T) {
	for in, want := range map[string]RestartPolicy{
		"":               {Name: RestartNo},
		"no":             {Name: RestartNo},
		"always":         {Name: RestartAlways},
		"unless-stopped": {Name: RestartUnlessStopped},
		"on-failure":     {Name: RestartOnFailure},
		"on-failure:3":   {Name: RestartOnFailure, MaximumRetryCount: 3},
	} {
		got, err := ParseRestartPolicy(in)
		if err != nil || got != want {
			t.Errorf("ParseRestartPolicy(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"sometimes", "always:2", "on-failure:x", "on-failure:-1"} {
		if _, err := ParseRestartPolicy(in); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseRestartPolicy(%q) = %v; want an invalid argument error", in, err)
		}
	}
	if s := (RestartPolicy{Name: RestartOnFailure, MaximumRetryCount: 5}).String(); s != "on-failure:5" {
		t.Errorf("String() = %q", s)
	}
}
