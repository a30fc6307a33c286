package supervisor

import (
	"testing"
	"time"

	"github.com/berth-engine/berth/services/containers"
)

func TestShouldRestart(t *testing.T) {
	for _, tc := range []struct {
		policy string
		st     containers.State
		want   bool
	}{
		{"no", containers.State{ExitCode: 1}, false},
		{"always", containers.State{}, true},
		{"unless-stopped", containers.State{ExitCode: 3}, true},
		{"on-failure", containers.State{}, false},
		{"on-failure", containers.State{ExitCode: 1, RestartCount: 100}, true},
		{"on-failure:2", containers.State{ExitCode: 1, RestartCount: 1}, true},
		{"on-failure:2", containers.State{ExitCode: 1, RestartCount: 2}, false},
		{"on-failure:2", containers.State{ExitCode: 0}, false},
	} {
		p, err := containers.ParseRestartPolicy(tc.policy)
		if err != nil {
			t.Fatal(err)
		}
		if got := shouldRestart(p, tc.st); got != tc.want {
			t.Errorf("shouldRestart(%s, %+v) = %v, want %v", tc.policy, tc.st, got, tc.want)
		}
	}
}

func TestBackoffDoublesUpToAMinute(t *testing.T) {
	var got []time.Duration
	d := time.Duration(0)
	for range 12 {
		d = nextBackoff(d)
		got = append(got, d)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 12800 * time.Millisecond,
		25600 * time.Millisecond, 51200 * time.Millisecond, time.Minute, time.Minute}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("back-off sequence = %v, want %v", got, want)
		}
	}
}
