package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/cli/imageutil"
	"github.com/berth-engine/berth/cli/names"
	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/images/unpack"
	"github.com/berth-engine/berth/services/leases"
	"github.com/berth-engine/berth/services/tasks/ocispec"
)

// createOptions are the flags `create` and `run` share.
type createOptions struct {
	name       string
	env        []string
	envFiles   []string
	user       string
	workdir    string
	hostname   string
	entrypoint string
	labels     []string
	network    string
	autoRemove bool
	logOpts    []string
	// interactive (-i) keeps stdin open; tty (-t) gives the process a
	// terminal; attach (-a) names the streams run attaches.
	interactive bool
	tty         bool
	attach      []string
	restart     string
	// entrypointSet tells --entrypoint "" (no entrypoint) from no flag.
	entrypointSet bool
	// limits are --privileged, --cap-add, --memory, ... (create_limits.go).
	limits limitOptions
}

func (o *createOptions) addFlags(flags *pflag.FlagSet) {
	flags.SetInterspersed(false) // flags after the image belong to the command
	flags.StringVar(&o.name, "name", "", "Assign a name to the container")
	flags.StringArrayVarP(&o.env, "env", "e", nil, "Set environment variables")
	flags.StringArrayVar(&o.envFiles, "env-file", nil, "Read in a file of environment variables")
	flags.StringVarP(&o.user, "user", "u", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	flags.StringVarP(&o.workdir, "workdir", "w", "", "Working directory inside the container")
	flags.StringVarP(&o.hostname, "hostname", "h", "", "Container host name")
	flags.StringVar(&o.entrypoint, "entrypoint", "", "Overwrite the default ENTRYPOINT of the image")
	flags.StringArrayVarP(&o.labels, "label", "l", nil, "Set meta data on a container")
	flags.StringVar(&o.network, "network", "", "Connect a container to a network: none or host")
	flags.BoolVar(&o.autoRemove, "rm", false, "Automatically remove the container when it exits")
	flags.StringArrayVar(&o.logOpts, "log-opt", nil, "Log driver options (json-file: max-size, max-file)")
	o.limits.addFlags(flags)
	flags.BoolVarP(&o.interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	flags.BoolVarP(&o.tty, "tty", "t", false, "Allocate a pseudo-TTY")
	flags.StringSliceVarP(&o.attach, "attach", "a", nil, "Attach to STDIN, STDOUT or STDERR")
	flags.StringVar(&o.restart, "restart", "no", "Restart policy to apply when a container exits")
}

func newCreateCommand(c *CLI) *cobra.Command {
	var o createOptions
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.entrypointSet = cmd.Flags().Changed("entrypoint")
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			ctr, err := c.createContainer(ctx, cl, o, args[0], args[1:])
			if err != nil {
				return failed(err)
			}
			fmt.Fprintln(c.Out, ctr.ID)
			return nil
		},
	}
	cmd.Flags().BoolP("help", "", false, "help for create") // -h is --hostname, as in Docker
	o.addFlags(cmd.Flags())
	return cmd
}

// createLeaseExpiry bounds how long what a create made survives a crash of
// the CLI before the record holds it.
const createLeaseExpiry = time.Hour

// createContainer makes a container from image: it unpacks the image when
// its snapshot is missing, prepares the root filesystem snapshot, writes the
// network files, generates the OCI spec and records the container. On
// failure nothing of it stays.
func (c *CLI) createContainer(ctx context.Context, cl *client.Client, o createOptions, image string, cmdArgs []string) (_ containers.Container, retErr error) {
	runOpts, err := o.runOptions(cmdArgs)
	if err != nil {
		return containers.Container{}, err
	}
	hostExt, err := o.limits.apply(&runOpts)
	if err != nil {
		return containers.Container{}, err
	}
	if runOpts.Resources.Memory > 0 && !ocispec.SwapLimitSupported() {
		// Docker's words: the limit holds, swap is not limited.
		fmt.Fprintln(c.Err, "WARNING: Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.")
	}
	config, err := o.config()
	if err != nil {
		return containers.Container{}, err
	}
	restart, err := o.restartPolicy()
	if err != nil {
		return containers.Container{}, err
	}
	if o.name != "" {
		o.name = strings.TrimPrefix(o.name, "/")
		if err := containers.ValidateName(o.name); err != nil {
			return containers.Container{}, err
		}
		if err := nameFree(ctx, cl, o.name); err != nil {
			return containers.Container{}, err
		}
	}
	snapshotter, err := c.Snapshotter(ctx, cl)
	if err != nil {
		return containers.Container{}, err
	}
	resolver := imageutil.NewResolver(cl.Images, cl.Content)
	match, err := resolver.Resolve(ctx, image)
	if err != nil {
		return containers.Container{}, err
	}
	img := match.Images[0]
	if img.Err != nil {
		return containers.Container{}, fmt.Errorf("reading image %s: %w", image, img.Err)
	}
	cfg, err := resolver.LoadConfig(ctx, img.Details)
	if err != nil {
		return containers.Container{}, fmt.Errorf("reading the config of image %s: %w", image, err)
	}

	lease, err := cl.Leases.Create(ctx, leases.WithExpiration(createLeaseExpiry),
		leases.WithLabels(map[string]string{"berth.io/purpose": "create"}))
	if err != nil {
		return containers.Container{}, fmt.Errorf("creating a lease for the new container: %w", err)
	}
	defer cl.Leases.Delete(context.WithoutCancel(ctx), lease)
	lctx := leases.WithLease(ctx, lease.ID)

	sn := cl.Snapshotter(snapshotter)
	chainID, err := unpack.Unpack(lctx, cl.Content, sn, cl.Diff, img.Image, unpack.WithSnapshotterName(snapshotter))
	if err != nil {
		return containers.Container{}, fmt.Errorf("unpacking image %s into snapshotter %q: %w", image, snapshotter, err)
	}
	id, err := newContainerID()
	if err != nil {
		return containers.Container{}, err
	}
	var undo []func(context.Context)
	defer func() {
		if retErr != nil {
			cctx := context.WithoutCancel(ctx)
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i](cctx)
			}
		}
	}()
	mounts, err := sn.Prepare(lctx, id, chainID.String())
	if err != nil {
		return containers.Container{}, fmt.Errorf("preparing the root filesystem of the container: %w", err)
	}
	undo = append(undo, func(ctx context.Context) { sn.Remove(ctx, id) })

	dir, err := containerDir(ctx, cl, id)
	if err != nil {
		return containers.Container{}, err
	}
	if runOpts.Hostname == "" {
		runOpts.Hostname = id[:12]
	}
	runOpts.CgroupsPath = ocispec.CgroupsPath(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return containers.Container{}, fmt.Errorf("creating the folder of the container: %w", err)
	}
	undo = append(undo, func(context.Context) { os.RemoveAll(dir) })
	if err := writeNetworkFiles(dir, runOpts.Hostname, o.network); err != nil {
		return containers.Container{}, err
	}
	runOpts.HostsPath = filepath.Join(dir, "hosts")
	runOpts.HostnamePath = filepath.Join(dir, "hostname")
	runOpts.ResolvConfPath = filepath.Join(dir, "resolv.conf")

	var spec []byte
	err = mount.WithTempMount(ctx, mounts, func(root string) error {
		s, err := ocispec.Generate(ctx, cfg.Config, runOpts, root)
		if err != nil {
			return err
		}
		// Docker creates a missing working directory; runc does not.
		if err := mkdirInRoot(root, s.Process.Cwd, s.Process.User.UID, s.Process.User.GID); err != nil {
			return fmt.Errorf("creating the working directory %s: %w", s.Process.Cwd, err)
		}
		spec, err = json.Marshal(s)
		return err
	})
	if err != nil {
		return containers.Container{}, err
	}

	entrypoint, cmd := ocispec.EntrypointAndCmd(cfg.Config.Entrypoint, cfg.Config.Cmd, runOpts.Entrypoint, runOpts.Cmd)
	config.Entrypoint, config.Cmd = entrypoint, cmd
	record := containers.Container{
		ID:          id,
		Name:        o.name,
		Labels:      runOpts.Labels,
		Image:       img.Name,
		Runtime:     containers.RuntimeInfo{Name: runtimeName},
		Spec:        &anypb.Any{TypeUrl: containers.SpecTypeURL, Value: spec},
		Snapshotter: snapshotter,
		SnapshotKey: id,
	}
	if restart.Name != containers.RestartNo {
		record.Labels = maps.Clone(record.Labels)
		if record.Labels == nil {
			record.Labels = map[string]string{}
		}
		record.Labels[containers.RestartPolicyLabel] = restart.String()
	}
	if err := hostExt.set(&record); err != nil {
		return containers.Container{}, err
	}
	if err := config.set(&record); err != nil {
		return containers.Container{}, err
	}
	if err := containers.SetIntent(&record, containers.Intent{AutoRemove: o.autoRemove}); err != nil {
		return containers.Container{}, err
	}
	// A generated name may be taken; Docker retries with a digit added.
	for retry := 0; ; retry++ {
		if o.name == "" {
			record.Name = names.Random(retry)
		}
		created, err := cl.Containers.Create(lctx, record)
		if err == nil {
			return created, nil
		}
		if o.name == "" && errdefs.IsAlreadyExists(err) && retry < 10 {
			continue
		}
		if errdefs.IsAlreadyExists(err) {
			if nerr := nameFree(ctx, cl, record.Name); nerr != nil {
				return containers.Container{}, nerr
			}
		}
		return containers.Container{}, fmt.Errorf("recording the container: %w", err)
	}
}

// nameFree returns Docker's conflict error when name is taken.
func nameFree(ctx context.Context, cl *client.Client, name string) error {
	c, taken, err := containerNamed(ctx, cl, name)
	if err != nil || !taken {
		return err
	}
	return errdefs.Errorf(errdefs.ErrAlreadyExists,
		"Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", name, c.ID)
}

func (o createOptions) runOptions(cmdArgs []string) (ocispec.RunOptions, error) {
	ro := ocispec.RunOptions{
		Cmd:        cmdArgs,
		User:       o.user,
		WorkingDir: o.workdir,
		Hostname:   o.hostname,
		LookupEnv:  os.LookupEnv,
		Tty:        o.tty,
	}
	if o.entrypointSet {
		ro.Entrypoint = []string{o.entrypoint}
	}
	switch o.network {
	case "", "default", "bridge":
		// Bridge networking is not there yet: a private namespace with loopback.
		ro.NetworkMode = ocispec.NetworkNone
	case ocispec.NetworkNone, ocispec.NetworkHost:
		ro.NetworkMode = o.network
	default:
		return ro, errdefs.Errorf(errdefs.ErrInvalidArgument, "network %q not found: use \"none\" or \"host\"", o.network)
	}
	for _, name := range o.envFiles {
		f, err := os.Open(name)
		if err != nil {
			return ro, errdefs.Errorf(errdefs.ErrInvalidArgument, "reading env file: %v", err)
		}
		lines, err := ocispec.ParseEnvFile(name, f)
		f.Close()
		if err != nil {
			return ro, err
		}
		ro.Env = append(ro.Env, lines...)
	}
	ro.Env = append(ro.Env, o.env...)
	for _, l := range o.labels {
		k, v, _ := strings.Cut(l, "=")
		if k == "" {
			return ro, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid label %q: the key must not be empty", l)
		}
		if ro.Labels == nil {
			ro.Labels = map[string]string{}
		}
		ro.Labels[k] = v
	}
	logLabels, err := containers.ParseLogOpts(o.logOpts)
	if err != nil {
		return ro, err
	}
	for k, v := range logLabels {
		if ro.Labels == nil {
			ro.Labels = map[string]string{}
		}
		ro.Labels[k] = v
	}
	return ro, nil
}

// restartPolicy parses --restart; as Docker, it cannot go with --rm.
func (o createOptions) restartPolicy() (containers.RestartPolicy, error) {
	p, err := containers.ParseRestartPolicy(o.restart)
	if err != nil {
		return p, err
	}
	if o.autoRemove && p.Name != containers.RestartNo {
		return p, errdefs.Errorf(errdefs.ErrInvalidArgument, "Conflicting options: --restart and --rm")
	}
	return p, nil
}

// writeNetworkFiles writes the container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf; with host networking, the host's hosts and resolv.conf.
func writeNetworkFiles(dir, hostname, network string) error {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n"
	resolv := ""
	if network == ocispec.NetworkHost {
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = string(b)
		}
	}
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		resolv = string(b)
	}
	for name, data := range map[string]string{"hosts": hosts, "hostname": hostname + "\n", "resolv.conf": resolv} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return fmt.Errorf("writing the container's %s: %w", name, err)
		}
	}
	return nil
}

// mkdirInRoot creates dir (absolute, inside the container) under root
// without following symbolic links out of it.
func mkdirInRoot(root, dir string, uid, gid uint32) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	rel := strings.TrimPrefix(filepath.Clean(dir), "/")
	if rel == "" {
		return nil
	}
	if _, err := r.Stat(rel); err == nil {
		return nil
	}
	if err := r.MkdirAll(rel, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return r.Lchown(rel, int(uid), int(gid))
}
