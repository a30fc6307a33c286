package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ExitFile is the file in the bundle where the shim records the exit of the
// container's init process, so that berthd learns it even when it was down
// (or the shim gone) at the time.
const ExitFile = "exit.json"

// Exit is the recorded exit of a container's init process.
type Exit struct {
	Pid        uint32    `json:"pid"`
	ExitStatus uint32    `json:"exit_status"`
	ExitedAt   time.Time `json:"exited_at"`
	// Dead is set when the shim died and `berth-shim delete` recorded the
	// exit in its place: the status is then 128+SIGKILL, not observed.
	Dead bool `json:"dead,omitempty"`
	// OOMKilled is set when the OOM killer acted in the container's cgroup.
	OOMKilled bool `json:"oom_killed,omitempty"`
}

// WriteExit records e in bundle durably: written to a temporary file,
// fsync'd, renamed over ExitFile, and the bundle directory fsync'd.
func WriteExit(bundle string, e Exit) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding the exit of the container in %s: %w", bundle, err)
	}
	tmp, err := os.CreateTemp(bundle, ".exit-*")
	if err != nil {
		return fmt.Errorf("recording the exit of the container in %s: %w", bundle, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("recording the exit of the container in %s: %w", bundle, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("recording the exit of the container in %s: %w", bundle, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("recording the exit of the container in %s: %w", bundle, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(bundle, ExitFile)); err != nil {
		return fmt.Errorf("recording the exit of the container in %s: %w", bundle, err)
	}
	return syncDir(bundle)
}

// ReadExit reads the exit recorded in bundle; an error satisfying
// os.IsNotExist means none was recorded.
func ReadExit(bundle string) (*Exit, error) {
	b, err := os.ReadFile(filepath.Join(bundle, ExitFile))
	if err != nil {
		return nil, err
	}
	var e Exit
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("reading the exit recorded in %s: %w", filepath.Join(bundle, ExitFile), err)
	}
	return &e, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
