package runtime

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestUpdate(t *testing.T) {
	rt, dir := newFake(t, nil)
	limit := int64(64 << 20)
	if err := rt.Update(context.Background(), "c1", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatal(err)
	}
	got := calls(t, dir)
	if len(got) != 1 || !strings.Contains(got[0], " update --resources ") || !strings.HasSuffix(got[0], " c1") {
		t.Errorf("runtime calls = %q, want one `update --resources FILE c1`", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, "resources.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(b, &res); err != nil || res.Memory == nil || *res.Memory.Limit != limit {
		t.Errorf("resources given to the runtime = %s (%v)", b, err)
	}
}
