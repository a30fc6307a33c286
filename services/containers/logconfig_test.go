package containers

import (
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
)

func TestParseLogOpts(t *testing.T) {
	labels, err := ParseLogOpts([]string{"max-size=10m", "max-file=3"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := LogConfigOf(labels)
	if err != nil || c.MaxSize != 10<<20 || c.MaxFiles != 3 {
		t.Errorf("LogConfigOf(%v) = %+v, %v", labels, c, err)
	}
	for in, want := range map[string]int64{"1": 1, "512k": 512 << 10, "1.5MB": 3 << 19, "2g": 2 << 30, "100b": 100, "4KiB": 4096} {
		if got, err := parseLogSize(in); err != nil || got != want {
			t.Errorf("parseLogSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range [][]string{{"max-size=abc"}, {"max-size=0"}, {"max-size=-1"}, {"max-file=0"}, {"max-file=x"}, {"compress"}, {"mode=non-blocking"}} {
		if _, err := ParseLogOpts(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseLogOpts(%q) = %v, want an invalid argument error", bad, err)
		}
	}
	if c, err := LogConfigOf(nil); err != nil || c != (LogConfig{}) {
		t.Errorf("LogConfigOf(nil) = %+v, %v", c, err)
	}
}
