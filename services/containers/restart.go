package containers

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/berth-engine/berth/internal/errdefs"
)

// RestartPolicyLabel is the container label holding the restart policy in
// Docker's syntax (`--restart`); no label means RestartNo.
const RestartPolicyLabel = "berth.restart.policy"

// Restart policy names, as Docker spells them.
const (
	RestartNo            = "no"
	RestartAlways        = "always"
	RestartOnFailure     = "on-failure"
	RestartUnlessStopped = "unless-stopped"
)

// RestartPolicy says when a container that exited is started again.
type RestartPolicy struct {
	// Name is RestartNo, RestartAlways, RestartOnFailure or RestartUnlessStopped.
	Name string
	// MaximumRetryCount bounds the restarts of RestartOnFailure; 0 is no bound.
	MaximumRetryCount int
}

// ParseRestartPolicy parses Docker's `--restart` value: no, always,
// unless-stopped or on-failure[:N]. The empty string is RestartNo.
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	name, count, hasCount := strings.Cut(s, ":")
	p := RestartPolicy{Name: name}
	switch name {
	case "":
		p.Name = RestartNo
	case RestartNo, RestartAlways, RestartUnlessStopped:
	case RestartOnFailure:
		if !hasCount {
			return p, nil
		}
		n, err := strconv.Atoi(count)
		if err != nil || n < 0 {
			return RestartPolicy{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid restart policy %q: the retry count must be a number of 0 or more, as in on-failure:3", s)
		}
		p.MaximumRetryCount = n
		return p, nil
	default:
		return RestartPolicy{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid restart policy %q: use no, always, unless-stopped or on-failure[:max-retries]", s)
	}
	if hasCount {
		return RestartPolicy{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid restart policy %q: only on-failure takes a retry count", s)
	}
	return p, nil
}

// String returns the policy in Docker's syntax.
func (p RestartPolicy) String() string {
	if p.Name == RestartOnFailure && p.MaximumRetryCount > 0 {
		return fmt.Sprintf("%s:%d", p.Name, p.MaximumRetryCount)
	}
	if p.Name == "" {
		return RestartNo
	}
	return p.Name
}

// RestartPolicyOf returns the restart policy recorded on c; a damaged label
// reads as RestartNo.
func RestartPolicyOf(c Container) RestartPolicy {
	p, err := ParseRestartPolicy(c.Labels[RestartPolicyLabel])
	if err != nil {
		return RestartPolicy{Name: RestartNo}
	}
	return p
}
