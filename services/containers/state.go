package containers

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
)

// A container record carries two extensions, each written by one party
// only, with a field mask naming its own key ("extensions.KEY"), so that
// neither overwrites the other's update:
//   - IntentExtension: what the user asked for (the CLI writes it);
//   - StateExtension: what berthd's supervisor observed of the runs.
const (
	StateExtension  = "berth-state"
	StateTypeURL    = "types.berth.dev/berth/ContainerState"
	IntentExtension = "berth-intent"
	IntentTypeURL   = "types.berth.dev/berth/ContainerIntent"
)

// State is what the supervisor observed of a container's runs, as Docker's
// container state.
type State struct {
	Running    bool `json:"running,omitempty"`
	Restarting bool `json:"restarting,omitempty"`
	// Dead is set when the container could not be cleaned up after it
	// exited (Error says why); it can only be removed.
	Dead       bool      `json:"dead,omitempty"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
	Pid        uint32    `json:"pid,omitempty"`
	ExitCode   uint32    `json:"exit_code"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// RestartCount counts the restarts made by the restart policy since
	// the container was last started by hand.
	RestartCount int `json:"restart_count,omitempty"`
	// Error says why the last run ended in an unusual way (a dead shim, a
	// restart that failed, a task lost in a reboot).
	Error string `json:"error,omitempty"`
}

// Intent is what the user asked of a container, beyond its record.
type Intent struct {
	// AutoRemove removes the container once it exits (--rm).
	AutoRemove bool `json:"auto_remove,omitempty"`
	// ManuallyStopped is set by stop and kill before they signal, and
	// cleared by start and restart: the restart policy does not apply to
	// an exit asked for.
	ManuallyStopped bool `json:"manually_stopped,omitempty"`
}

// StateOf returns the observed state recorded on c; a missing or damaged
// one reads as "never ran".
func StateOf(c Container) State {
	var st State
	ReadExtension(c, StateExtension, &st)
	return st
}

// IntentOf returns the intent recorded on c; a missing or damaged one
// reads as the zero Intent.
func IntentOf(c Container) Intent {
	var in Intent
	ReadExtension(c, IntentExtension, &in)
	return in
}

// SetState sets st in c's extensions; update the record with the field
// path "extensions."+StateExtension.
func SetState(c *Container, st State) error {
	return SetExtension(c, StateExtension, StateTypeURL, st)
}

// SetIntent sets in in c's extensions; update the record with the field
// path "extensions."+IntentExtension.
func SetIntent(c *Container, in Intent) error {
	return SetExtension(c, IntentExtension, IntentTypeURL, in)
}

// ReadExtension decodes the JSON extension key of c into v and says
// whether there was one; a damaged one leaves v as decoding left it.
func ReadExtension(c Container, key string, v any) bool {
	a := c.Extensions[key]
	if a == nil {
		return false
	}
	_ = json.Unmarshal(a.GetValue(), v)
	return true
}

// SetExtension sets v, as JSON of type typeURL, under key in c's
// extensions (a copy of the map: c may share it); update the record with
// the field path "extensions."+key.
func SetExtension(c *Container, key, typeURL string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding the %s of container %q: %w", key, c.ID, err)
	}
	ext := make(map[string]*anypb.Any, len(c.Extensions)+1)
	for k, a := range c.Extensions {
		ext[k] = a
	}
	ext[key] = &anypb.Any{TypeUrl: typeURL, Value: b}
	c.Extensions = ext
	return nil
}
