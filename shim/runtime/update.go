package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Update runs `runtime update --resources FILE`: the running container's
// cgroup gets the resources set in res; those left out keep their value.
func (r *Runtime) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	f, err := os.CreateTemp("", "berth-resources-*.json")
	if err != nil {
		return fmt.Errorf("writing the resources of container %q: %w", id, err)
	}
	defer os.Remove(f.Name())
	if err := json.NewEncoder(f).Encode(res); err != nil {
		f.Close()
		return fmt.Errorf("writing the resources of container %q: %w", id, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the resources of container %q: %w", id, err)
	}
	_, err = r.run(ctx, IO{}, "update", "--resources", f.Name(), id)
	return err
}
