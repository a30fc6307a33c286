package command

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/cli/formatter"
	"github.com/berth-engine/berth/internal/errdefs"
	introspectionv1 "github.com/berth-engine/berth/proto/introspection/v1"
)

// versionInfo is one side of `berth version`.
type versionInfo struct {
	Version   string
	Revision  string
	GoVersion string
	Os        string
	Arch      string
}

type versionOutput struct {
	Client versionInfo
	Server *versionInfo
}

func newVersionCommand(c *CLI) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version [OPTIONS]",
		Short: "Show the berth and berthd version information",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVersion(cmd.Context(), c, format)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output: 'json' or a Go template over .Client and .Server")
	return cmd
}

func runVersion(ctx context.Context, c *CLI, format string) error {
	out := versionOutput{Client: versionInfo{
		Version:   orDev(c.Build.Version),
		Revision:  c.Build.Revision,
		GoVersion: runtime.Version(),
		Os:        runtime.GOOS,
		Arch:      runtime.GOARCH,
	}}
	// The client half is printed even when berthd cannot be reached, then
	// the error, as `docker version` does.
	var serverErr error
	if ctx, cl, err := c.Client(ctx); err != nil {
		serverErr = err
	} else if v, err := cl.Introspection.Version(ctx, &emptypb.Empty{}); err != nil {
		serverErr = fmt.Errorf("asking berthd for its version: %w", errdefs.FromGRPC(err))
	} else {
		out.Server = &versionInfo{Version: v.GetVersion(), Revision: v.GetRevision(), GoVersion: v.GetGoVersion(), Os: v.GetOs(), Arch: v.GetArch()}
	}

	switch format {
	case "":
		printVersion(c.Out, "Client", out.Client)
		if out.Server != nil {
			fmt.Fprintln(c.Out)
			printVersion(c.Out, "Server", *out.Server)
		}
	case formatter.JSONFormatKey:
		if err := formatter.Write(c.Out, "json", formatter.Table{}, []versionOutput{out}); err != nil {
			return err
		}
	default:
		if err := formatter.ExecuteEach(c.Out, format, []versionOutput{out}); err != nil {
			return err
		}
	}
	return serverErr
}

func printVersion(w io.Writer, title string, v versionInfo) {
	fmt.Fprintf(w, "%s:\n", title)
	tw := tabwriter.NewWriter(w, 0, 1, 1, ' ', 0)
	fmt.Fprintf(tw, " Version:\t%s\n", v.Version)
	if v.Revision != "" {
		fmt.Fprintf(tw, " Git commit:\t%s\n", v.Revision)
	}
	fmt.Fprintf(tw, " Go version:\t%s\n", v.GoVersion)
	fmt.Fprintf(tw, " OS/Arch:\t%s/%s\n", v.Os, v.Arch)
	tw.Flush()
}

func orDev(v string) string {
	if v == "" {
		return "dev"
	}
	return v
}

// infoOutput is `berth info`: what berthd reports about itself.
type infoOutput struct {
	ServerVersion      string
	ID                 string
	PID                int32
	StartedAt          time.Time
	RootDir            string
	StateDir           string
	MetadataSchema     string
	DefaultSnapshotter string
	CgroupVersion      string
	KernelVersion      string
	Os                 string
	Arch               string
	NCPU               int32
	MemTotal           int64
	Namespace          string
	// Containers and Images count the namespace's, as Docker's info.
	Containers        int
	ContainersRunning int
	ContainersPaused  int
	ContainersStopped int
	Images            int
	DefaultRuntime    string
	CgroupDriver      string
	SecurityOptions   []string
	Components        []infoComponent
}

type infoComponent struct {
	Type    string
	Name    string
	Address string
	Status  string
}

func newInfoCommand(c *CLI) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info [OPTIONS]",
		Short: "Display information about berthd",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInfo(cmd.Context(), c, format)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output: 'json' or a Go template")
	return cmd
}

func runInfo(ctx context.Context, c *CLI, format string) error {
	ctx, cl, err := c.Client(ctx)
	if err != nil {
		return err
	}
	info, err := cl.Introspection.Info(ctx, &emptypb.Empty{})
	if err != nil {
		return fmt.Errorf("asking berthd for its info: %w", errdefs.FromGRPC(err))
	}
	v, err := cl.Introspection.Version(ctx, &emptypb.Empty{})
	if err != nil {
		return fmt.Errorf("asking berthd for its version: %w", errdefs.FromGRPC(err))
	}
	out := newInfoOutput(info, v.GetVersion(), c.Namespace())
	if err := countObjects(ctx, cl, &out); err != nil {
		return err
	}
	switch format {
	case "":
		printInfo(c.Out, out)
		return nil
	case formatter.JSONFormatKey:
		return formatter.Write(c.Out, "json", formatter.Table{}, []infoOutput{out})
	}
	return formatter.ExecuteEach(c.Out, format, []infoOutput{out})
}

func newInfoOutput(info *introspectionv1.InfoResponse, version, namespace string) infoOutput {
	out := infoOutput{
		ServerVersion:      version,
		ID:                 info.GetUuid(),
		PID:                info.GetPid(),
		RootDir:            info.GetRoot(),
		StateDir:           info.GetState(),
		MetadataSchema:     info.GetMetadataSchema(),
		DefaultSnapshotter: info.GetDefaultSnapshotter(),
		CgroupVersion:      info.GetCgroupVersion(),
		KernelVersion:      info.GetKernelVersion(),
		Os:                 info.GetOs(),
		Arch:               info.GetArch(),
		NCPU:               info.GetNcpu(),
		MemTotal:           info.GetMemTotal(),
		Namespace:          namespace,
		DefaultRuntime:     info.GetDefaultRuntime(),
		CgroupDriver:       info.GetCgroupDriver(),
		SecurityOptions:    info.GetSecurityOptions(),
		Components:         []infoComponent{},
	}
	if info.GetStartedAt() != nil {
		out.StartedAt = info.GetStartedAt().AsTime()
	}
	for _, comp := range info.GetComponents() {
		out.Components = append(out.Components, infoComponent{Type: comp.GetType(), Name: comp.GetName(), Address: comp.GetAddress(), Status: comp.GetStatus()})
	}
	return out
}

// countObjects counts the namespace's containers by state and its images.
func countObjects(ctx context.Context, cl *client.Client, o *infoOutput) error {
	ctrs, err := cl.Containers.List(ctx)
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	resp, err := cl.Tasks.List(ctx, &tasksv1.ListTasksRequest{})
	if err != nil {
		return fmt.Errorf("listing tasks: %w", errdefs.FromGRPC(err))
	}
	status := map[string]tasksv1.Status{}
	for _, t := range resp.GetTasks() {
		status[t.GetId()] = t.GetStatus()
	}
	o.Containers = len(ctrs)
	for _, c := range ctrs {
		switch status[c.ID] {
		case tasksv1.Status_STATUS_RUNNING:
			o.ContainersRunning++
		case tasksv1.Status_STATUS_PAUSED:
			o.ContainersPaused++
		default:
			o.ContainersStopped++
		}
	}
	imgs, err := cl.Images.List(ctx)
	if err != nil {
		return fmt.Errorf("listing images: %w", err)
	}
	o.Images = len(imgs)
	return nil
}

func printInfo(w io.Writer, o infoOutput) {
	fmt.Fprintln(w, "Server:")
	tw := tabwriter.NewWriter(w, 0, 1, 1, ' ', 0)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, " %s:\t%s\n", k, v)
		}
	}
	line("Containers", fmt.Sprint(o.Containers))
	line("  Running", fmt.Sprint(o.ContainersRunning))
	line("  Paused", fmt.Sprint(o.ContainersPaused))
	line("  Stopped", fmt.Sprint(o.ContainersStopped))
	line("Images", fmt.Sprint(o.Images))
	line("Server Version", o.ServerVersion)
	line("ID", o.ID)
	if o.PID != 0 {
		line("PID", fmt.Sprint(o.PID))
	}
	if !o.StartedAt.IsZero() {
		line("Started", formatter.TimeAgo(o.StartedAt, time.Now())+" ("+o.StartedAt.Local().Format(time.RFC3339)+")")
	}
	line("Root Dir", o.RootDir)
	line("State Dir", o.StateDir)
	line("Metadata Schema", o.MetadataSchema)
	line("Default Snapshotter", o.DefaultSnapshotter)
	line("Cgroup Driver", o.CgroupDriver)
	line("Cgroup Version", o.CgroupVersion)
	line("Default Runtime", o.DefaultRuntime)
	line("Security Options", strings.Join(o.SecurityOptions, ", "))
	line("Kernel Version", o.KernelVersion)
	if o.Os != "" {
		line("OS/Arch", o.Os+"/"+o.Arch)
	}
	if o.NCPU != 0 {
		line("CPUs", fmt.Sprint(o.NCPU))
	}
	if o.MemTotal != 0 {
		line("Total Memory", formatter.HumanBinarySize(o.MemTotal))
	}
	line("Namespace", o.Namespace)
	tw.Flush()
	if len(o.Components) == 0 {
		return
	}
	fmt.Fprintln(w, " Components:")
	tw = tabwriter.NewWriter(w, 0, 1, 2, ' ', 0)
	for _, comp := range o.Components {
		addr := comp.Address
		if addr == "" {
			addr = "(in berthd)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", comp.Type, comp.Name, addr, strings.TrimSpace(comp.Status))
	}
	tw.Flush()
}
