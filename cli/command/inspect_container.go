package command

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/cli/formatter"
	"github.com/berth-engine/berth/cli/imageutil"
	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
)

// inspectContainer is the JSON of `berth container inspect`, shaped like
// Docker's.
type inspectContainer struct {
	ID           string `json:"Id"`
	Created      string
	Path         string
	Args         []string
	State        inspectState
	Image        string
	Name         string
	RestartCount int
	Driver       string
	Platform     string
	HostConfig   inspectHostConfig
	Mounts       []inspectMount
	Config       inspectContainerConfig
}

type inspectState struct {
	Status     string
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int
	ExitCode   int
	Error      string
	StartedAt  string
	FinishedAt string
}

type inspectHostConfig struct {
	NetworkMode   string
	RestartPolicy inspectRestartPolicy
	AutoRemove    bool
	LogConfig     inspectLogConfig
	inspectLimits
}

type inspectRestartPolicy struct {
	Name              string
	MaximumRetryCount int
}

// inspectLogConfig is the log driver and its --log-opt options.
type inspectLogConfig struct {
	Type   string
	Config map[string]string
}

type inspectMount struct {
	Type        string
	Source      string
	Destination string
	Mode        string
	RW          bool
	Propagation string
}

type inspectContainerConfig struct {
	Hostname     string
	User         string
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	Tty          bool
	OpenStdin    bool
	StdinOnce    bool
	Env          []string
	Cmd          []string
	Image        string
	WorkingDir   string
	Entrypoint   []string
	Labels       map[string]string
}

// zeroTime is how Docker shows a time that has not come yet.
const zeroTime = "0001-01-01T00:00:00Z"

func inspectTime(t time.Time) string {
	if t.IsZero() {
		return zeroTime
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// newInspectContainer describes ctr, whose task is p (nil when none) and
// whose image has imageID (empty when unknown).
func newInspectContainer(ctr containers.Container, p *tasksv1.Process, imageID string, now time.Time) inspectContainer {
	state, _ := containerStatus(ctr, p, now)
	st := containers.StateOf(ctr)
	policy := containers.RestartPolicyOf(ctr)
	ic := inspectContainer{
		ID:      ctr.ID,
		Created: inspectTime(ctr.CreatedAt),
		Args:    []string{},
		State: inspectState{
			Status:     state,
			Running:    state == "running" || state == "paused",
			Paused:     state == "paused",
			Restarting: state == "restarting",
			OOMKilled:  st.OOMKilled,
			Dead:       st.Dead,
			Error:      st.Error,
			ExitCode:   int(st.ExitCode),
			StartedAt:  inspectTime(st.StartedAt),
			FinishedAt: inspectTime(st.FinishedAt),
		},
		Image:        imageID,
		Name:         "/" + ctr.Name,
		Driver:       ctr.Snapshotter,
		Platform:     "linux",
		RestartCount: st.RestartCount,
		HostConfig: inspectHostConfig{NetworkMode: "none", AutoRemove: containers.IntentOf(ctr).AutoRemove,
			RestartPolicy: inspectRestartPolicy{Name: policy.Name, MaximumRetryCount: policy.MaximumRetryCount},
			LogConfig:     logConfigOf(ctr)},
		Mounts: []inspectMount{},
		Config: inspectContainerConfig{Image: displayName(ctr.Image), Labels: ctr.Labels},
	}
	if ic.State.Running {
		ic.State.Pid = int(p.GetPid())
	}
	if p != nil && p.GetStatus() == tasksv1.Status_STATUS_STOPPED {
		ic.State.ExitCode = int(p.GetExitStatus())
		if p.GetExitedAt() != nil {
			ic.State.FinishedAt = inspectTime(p.GetExitedAt().AsTime())
		}
	}
	cfg := configOf(ctr)
	ic.Config.AttachStdin, ic.Config.AttachStdout, ic.Config.AttachStderr = cfg.AttachStdin, cfg.AttachStdout, cfg.AttachStderr
	ic.Config.OpenStdin, ic.Config.StdinOnce = cfg.OpenStdin, cfg.StdinOnce
	// The restart policy shows as HostConfig.RestartPolicy, as Docker's.
	ic.Config.Labels = maps.Clone(ic.Config.Labels)
	delete(ic.Config.Labels, containers.RestartPolicyLabel)
	if ic.Config.Labels == nil {
		ic.Config.Labels = map[string]string{}
	}
	s, err := specOf(ctr)
	if err != nil {
		if ic.State.Error == "" {
			ic.State.Error = err.Error()
		}
		return ic
	}
	ic.Config.Hostname = s.Hostname
	if proc := s.Process; proc != nil {
		if len(proc.Args) > 0 {
			ic.Path, ic.Args = proc.Args[0], append([]string{}, proc.Args[1:]...)
		}
		ic.Config.Cmd = proc.Args
		if cfg.Entrypoint != nil || cfg.Cmd != nil {
			ic.Config.Entrypoint, ic.Config.Cmd = cfg.Entrypoint, cfg.Cmd
		}
		ic.Config.Env = proc.Env
		ic.Config.WorkingDir = proc.Cwd
		ic.Config.Tty = proc.Terminal
		if u := proc.User; u.UID != 0 || u.GID != 0 {
			ic.Config.User = strconv.FormatUint(uint64(u.UID), 10) + ":" + strconv.FormatUint(uint64(u.GID), 10)
		}
	}
	ic.HostConfig.NetworkMode = networkMode(s)
	ic.HostConfig.inspectLimits = limitsOf(ctr, s)
	for _, m := range s.Mounts {
		if m.Type != "bind" || isNetworkFile(m.Destination) {
			continue
		}
		im := inspectMount{Type: "bind", Source: m.Source, Destination: m.Destination, RW: true, Propagation: "rprivate"}
		for _, o := range m.Options {
			switch o {
			case "ro":
				im.RW, im.Mode = false, "ro"
			case "rprivate", "private", "rshared", "shared", "rslave", "slave":
				im.Propagation = o
			}
		}
		ic.Mounts = append(ic.Mounts, im)
	}
	return ic
}

// logConfigOf shows the container's log options as Docker's LogConfig.
func logConfigOf(ctr containers.Container) inspectLogConfig {
	lc := inspectLogConfig{Type: "json-file", Config: map[string]string{}}
	if v, ok := ctr.Labels[containers.LogMaxSizeLabel]; ok {
		lc.Config["max-size"] = v
	}
	if v, ok := ctr.Labels[containers.LogMaxFileLabel]; ok {
		lc.Config["max-file"] = v
	}
	return lc
}

func isNetworkFile(dst string) bool {
	return dst == "/etc/hosts" || dst == "/etc/hostname" || dst == "/etc/resolv.conf"
}

// networkMode is "host" for a container in the host's network namespace,
// else "none" (berth has no bridge network yet).
func networkMode(s *specs.Spec) string {
	if s.Linux == nil {
		return "host"
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return "none"
		}
	}
	return "host"
}

func newContainerInspectCommand(c *CLI) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Display detailed information on one or more containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runInspect(cmd.Context(), format, args, false)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template: 'json' (the default) or a Go template")
	return cmd
}

// newInspectCommand is `berth inspect`: containers, and images for names
// no container has, as Docker's.
func newInspectCommand(c *CLI) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NAME|ID [NAME|ID...]",
		Short: "Return low-level information on containers or images",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runInspect(cmd.Context(), format, args, true)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template: 'json' (the default) or a Go template")
	return cmd
}

func (c *CLI) runInspect(ctx context.Context, format string, args []string, images bool) error {
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	r := imageutil.NewResolver(cl.Images, cl.Content)
	out := []any{}
	var errs []error
	for _, arg := range args {
		ctr, err := resolveContainer(ctx, cl, arg)
		if err == nil {
			var ic inspectContainer
			ic, err = describeContainer(ctx, cl, r, ctr)
			if err == nil {
				out = append(out, ic)
				continue
			}
		}
		if !errdefs.IsNotFound(err) || !images {
			errs = append(errs, err)
			continue
		}
		ii, ierr := describeImage(ctx, r, arg)
		if ierr != nil {
			if errdefs.IsNotFound(ierr) {
				ierr = errdefs.Errorf(errdefs.ErrNotFound, "No such object: %s", arg)
			}
			errs = append(errs, ierr)
			continue
		}
		out = append(out, ii)
	}
	if format == "" || format == formatter.JSONFormatKey {
		if err := formatter.WriteJSONIndent(c.Out, out); err != nil {
			return err
		}
	} else if err := formatter.ExecuteInspect(c.Out, format, out); err != nil {
		return err
	}
	return joinErrs(errs)
}

func describeContainer(ctx context.Context, cl *client.Client, r *imageutil.Resolver, ctr containers.Container) (inspectContainer, error) {
	p, err := taskOf(ctx, cl, ctr.ID)
	if err != nil {
		return inspectContainer{}, err
	}
	// The image may be gone or renamed since; its ID is then unknown.
	var imageID string
	if m, err := r.Resolve(ctx, ctr.Image); err == nil && m.Images[0].Err == nil {
		imageID = m.ID().String()
	}
	return newInspectContainer(ctr, p, imageID, time.Now()), nil
}

func describeImage(ctx context.Context, r *imageutil.Resolver, arg string) (inspectImage, error) {
	m, err := r.Resolve(ctx, arg)
	if err == nil {
		err = m.Images[0].Err
	}
	var cfg *ocispec.Image
	if err == nil {
		cfg, err = r.LoadConfig(ctx, m.Images[0].Details)
	}
	if err != nil {
		return inspectImage{}, err
	}
	all, err := r.List(ctx)
	if err != nil {
		return inspectImage{}, fmt.Errorf("listing images: %w", err)
	}
	imgs := sameID(all, m.ID())
	if len(imgs) == 0 {
		imgs = m.Images
	}
	return newInspectImage(m.Images[0], cfg, imgs), nil
}
