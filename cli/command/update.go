package command

import (
	"context"
	"encoding/json"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/tasks/ocispec"
)

// updateOptions are the flags of `update`, as Docker spells them; only the
// flags given change anything.
type updateOptions struct {
	resourceFlags
	restart string
	changed func(name string) bool
}

func newUpdateCommand(c *CLI) *cobra.Command {
	var o updateOptions
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Update configuration of one or more containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.changed = cmd.Flags().Changed
			res, err := o.resources()
			if err != nil {
				return err
			}
			var policy *containers.RestartPolicy
			if o.changed("restart") {
				p, err := containers.ParseRestartPolicy(o.restart)
				if err != nil {
					return err
				}
				policy = &p
			}
			if res == nil && policy == nil {
				return errdefs.Errorf(errdefs.ErrInvalidArgument, "you must provide one or more flags when using this command")
			}
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			nanoCPUs := o.nanoCPUs()
			return c.eachContainer(ctx, cl, args, func(ctr containers.Container) error {
				return updateContainer(ctx, cl, ctr, res, nanoCPUs, policy)
			})
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *updateOptions) addFlags(flags *pflag.FlagSet) {
	o.resourceFlags.addFlags(flags)
	flags.StringVar(&o.restart, "restart", "", "Restart policy to apply when a container exits")
}

// resources returns the OCI resources the flags set, or nil when they set
// none, after Docker's checks.
func (o *updateOptions) resources() (*specs.LinuxResources, error) {
	r := o.resourceFlags.resources()
	check := r
	if !o.changed("memory") {
		// A swap limit alone is checked against the recorded memory limit
		// (checkSwap), not against none.
		check.MemorySwap = 0
	}
	if o.changed("cpus") && (o.changed("cpu-quota") || o.changed("cpu-period")) {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "Conflicting options: --cpus and --cpu-period/--cpu-quota cannot both be set")
	}
	if err := check.Validate(); err != nil {
		return nil, err
	}
	res := &specs.LinuxResources{}
	set := false
	mem := func() *specs.LinuxMemory {
		if res.Memory == nil {
			res.Memory = &specs.LinuxMemory{}
		}
		set = true
		return res.Memory
	}
	cpu := func() *specs.LinuxCPU {
		if res.CPU == nil {
			res.CPU = &specs.LinuxCPU{}
		}
		set = true
		return res.CPU
	}
	if o.changed("memory") {
		mem().Limit = &r.Memory
	}
	if o.changed("memory-swap") {
		mem().Swap = &r.MemorySwap
	}
	if o.changed("memory-reservation") {
		mem().Reservation = &r.MemoryReservation
	}
	if o.changed("cpus") {
		quota, period := r.NanoCPUs*ocispec.CPUPeriod/1e9, uint64(ocispec.CPUPeriod)
		cpu().Quota, cpu().Period = &quota, &period
	}
	if o.changed("cpu-shares") {
		n := uint64(r.CPUShares)
		cpu().Shares = &n
	}
	if o.changed("cpu-quota") {
		cpu().Quota = &r.CPUQuota
	}
	if o.changed("cpu-period") {
		n := uint64(r.CPUPeriod)
		cpu().Period = &n
	}
	if o.changed("cpuset-cpus") {
		cpu().Cpus = r.CpusetCpus
	}
	if o.changed("cpuset-mems") {
		cpu().Mems = r.CpusetMems
	}
	if o.changed("pids-limit") {
		n := r.PidsLimit
		if n <= 0 {
			n = -1 // 0 and -1 both mean no limit, as in Docker
		}
		res.Pids = &specs.LinuxPids{Limit: &n}
		set = true
	}
	if o.changed("blkio-weight") {
		res.BlockIO = &specs.LinuxBlockIO{Weight: &r.BlkioWeight}
		set = true
	}
	if !set {
		return nil, nil
	}
	return res, nil
}

// nanoCPUs is the --cpus inspect shows after the update: the new value,
// 0 when a CFS quota or period replaces it, nil when unchanged.
func (o *updateOptions) nanoCPUs() *int64 {
	switch {
	case o.changed("cpus"):
		n := int64(o.cpus)
		return &n
	case o.changed("cpu-quota"), o.changed("cpu-period"):
		return new(int64)
	}
	return nil
}

// updateContainer applies res to the container's running task, if any,
// then records res (with nanoCPUs, see updateOptions.nanoCPUs) and the
// restart policy in the container's record, so that the next start keeps
// them. A failed live update changes nothing.
func updateContainer(ctx context.Context, cl *client.Client, ctr containers.Container, res *specs.LinuxResources, nanoCPUs *int64, policy *containers.RestartPolicy) error {
	var paths []string
	if policy != nil {
		if policy.Name != containers.RestartNo && containers.IntentOf(ctr).AutoRemove {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "cannot update container %s: Restart policy cannot be updated because AutoRemove is enabled for the container", ctr.Name)
		}
		if ctr.Labels == nil {
			ctr.Labels = map[string]string{}
		}
		ctr.Labels[containers.RestartPolicyLabel] = policy.String()
		paths = append(paths, "labels."+containers.RestartPolicyLabel)
	}
	if res != nil {
		spec, err := specOf(ctr)
		if err != nil {
			return err
		}
		if spec.Linux == nil {
			spec.Linux = &specs.Linux{}
		}
		if spec.Linux.Resources == nil {
			spec.Linux.Resources = &specs.LinuxResources{}
		}
		if err := checkSwap(spec.Linux.Resources, res); err != nil {
			return fmt.Errorf("cannot update container %s: %w", ctr.Name, err)
		}
		mergeResources(spec.Linux.Resources, res)
		b, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		p, err := taskOf(ctx, cl, ctr.ID)
		if err != nil {
			return err
		}
		if isRunning(p) {
			live, err := json.Marshal(res)
			if err != nil {
				return err
			}
			if _, err := cl.Tasks.Update(ctx, &tasksv1.UpdateTaskRequest{ContainerId: ctr.ID, Resources: live}); err != nil {
				return fmt.Errorf("cannot update container %s: %w", ctr.Name, err)
			}
		}
		ctr.Spec = &anypb.Any{TypeUrl: containers.SpecTypeURL, Value: b}
		paths = append(paths, "spec")
		if nanoCPUs != nil {
			ext := hostConfigExtOf(ctr)
			ext.NanoCpus = *nanoCPUs
			if err := ext.set(&ctr); err != nil {
				return err
			}
			paths = append(paths, "extensions."+hostConfigExtension)
		}
	}
	if _, err := cl.Containers.Update(ctx, ctr, paths...); err != nil {
		return fmt.Errorf("cannot update container %s: %w", ctr.Name, err)
	}
	return nil
}

// checkSwap refuses a memory limit above the memory+swap limit already
// set, as Docker does: both must change together.
func checkSwap(cur, res *specs.LinuxResources) error {
	if res.Memory == nil || res.Memory.Limit == nil || res.Memory.Swap != nil {
		return nil
	}
	if cur.Memory != nil && cur.Memory.Swap != nil && *cur.Memory.Swap > 0 && *res.Memory.Limit > *cur.Memory.Swap {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time")
	}
	return nil
}

// mergeResources sets in dst the fields that src sets.
func mergeResources(dst, src *specs.LinuxResources) {
	if m := src.Memory; m != nil {
		if dst.Memory == nil {
			dst.Memory = &specs.LinuxMemory{}
		}
		if m.Limit != nil {
			dst.Memory.Limit = m.Limit
		}
		if m.Swap != nil {
			dst.Memory.Swap = m.Swap
		}
		if m.Reservation != nil {
			dst.Memory.Reservation = m.Reservation
		}
	}
	if c := src.CPU; c != nil {
		if dst.CPU == nil {
			dst.CPU = &specs.LinuxCPU{}
		}
		if c.Shares != nil {
			dst.CPU.Shares = c.Shares
		}
		if c.Quota != nil {
			dst.CPU.Quota = c.Quota
		}
		if c.Period != nil {
			dst.CPU.Period = c.Period
		}
		if c.Cpus != "" {
			dst.CPU.Cpus = c.Cpus
		}
		if c.Mems != "" {
			dst.CPU.Mems = c.Mems
		}
	}
	if src.Pids != nil {
		dst.Pids = src.Pids
	}
	if b := src.BlockIO; b != nil && b.Weight != nil {
		if dst.BlockIO == nil {
			dst.BlockIO = &specs.LinuxBlockIO{}
		}
		dst.BlockIO.Weight = b.Weight
	}
}
