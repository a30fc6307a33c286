package command

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"runtime"

	units "github.com/docker/go-units"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
)

const (
	// minMemory is Docker's smallest memory limit.
	minMemory = 6 * 1024 * 1024
	// cpuPeriod is the CFS period --cpus is expressed in, as Docker.
	cpuPeriod = 100000
)

// updateOptions are the flags of `update`, as Docker spells them; only the
// flags given change anything.
type updateOptions struct {
	memory, memorySwap, memoryReservation string
	cpus                                  float64
	cpuShares                             uint64
	cpuQuota                              int64
	cpuPeriod                             uint64
	cpusetCpus, cpusetMems                string
	pidsLimit                             int64
	blkioWeight                           uint16
	restart                               string
	changed                               func(name string) bool
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
			return c.eachContainer(ctx, cl, args, func(ctr containers.Container) error {
				return updateContainer(ctx, cl, ctr, res, policy)
			})
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *updateOptions) addFlags(flags *pflag.FlagSet) {
	flags.StringVarP(&o.memory, "memory", "m", "", "Memory limit")
	flags.StringVar(&o.memorySwap, "memory-swap", "", "Swap limit equal to memory plus swap: -1 to enable unlimited swap")
	flags.StringVar(&o.memoryReservation, "memory-reservation", "", "Memory soft limit")
	flags.Float64Var(&o.cpus, "cpus", 0, "Number of CPUs")
	flags.Uint64VarP(&o.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	flags.Int64Var(&o.cpuQuota, "cpu-quota", 0, "Limit CPU CFS (Completely Fair Scheduler) quota")
	flags.Uint64Var(&o.cpuPeriod, "cpu-period", 0, "Limit CPU CFS (Completely Fair Scheduler) period")
	flags.StringVar(&o.cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	flags.StringVar(&o.cpusetMems, "cpuset-mems", "", "MEMs in which to allow execution (0-3, 0,1)")
	flags.Int64Var(&o.pidsLimit, "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")
	flags.Uint16Var(&o.blkioWeight, "blkio-weight", 0, "Block IO (relative weight), between 10 and 1000, or 0 to disable")
	flags.StringVar(&o.restart, "restart", "", "Restart policy to apply when a container exits")
}

// resources returns the OCI resources the flags set, or nil when they set
// none, after Docker's checks.
func (o *updateOptions) resources() (*specs.LinuxResources, error) {
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
		n, err := units.RAMInBytes(o.memory)
		if err != nil {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid argument %q for \"-m, --memory\" flag: %v", o.memory, err)
		}
		if n < minMemory {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "Minimum memory limit allowed is 6MB")
		}
		mem().Limit = &n
	}
	if o.changed("memory-swap") {
		n := int64(-1)
		if o.memorySwap != "-1" {
			v, err := units.RAMInBytes(o.memorySwap)
			if err != nil {
				return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid argument %q for \"--memory-swap\" flag: %v", o.memorySwap, err)
			}
			n = v
		}
		if n != -1 && res.Memory != nil && res.Memory.Limit != nil && n < *res.Memory.Limit {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "Minimum memoryswap limit should be larger than memory limit, see usage")
		}
		mem().Swap = &n
	}
	if o.changed("memory-reservation") {
		n, err := units.RAMInBytes(o.memoryReservation)
		if err != nil {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid argument %q for \"--memory-reservation\" flag: %v", o.memoryReservation, err)
		}
		if res.Memory != nil && res.Memory.Limit != nil && n > *res.Memory.Limit {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "Minimum memory limit can not be less than memory reservation limit, see usage")
		}
		mem().Reservation = &n
	}
	if o.changed("cpus") {
		if o.changed("cpu-quota") || o.changed("cpu-period") {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "Conflicting options: --cpus and --cpu-period/--cpu-quota cannot both be set")
		}
		if n := runtime.NumCPU(); o.cpus < 0.01 || o.cpus > float64(n) {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", n, n)
		}
		quota, period := int64(math.Round(o.cpus*cpuPeriod)), uint64(cpuPeriod)
		cpu().Quota, cpu().Period = &quota, &period
	}
	if o.changed("cpu-shares") {
		n := o.cpuShares
		cpu().Shares = &n
	}
	if o.changed("cpu-quota") {
		n := o.cpuQuota
		if n != -1 && n != 0 && n < 1000 {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "CPU cfs quota can not be less than 1ms (i.e. 1000)")
		}
		cpu().Quota = &n
	}
	if o.changed("cpu-period") {
		n := o.cpuPeriod
		if n != 0 && (n < 1000 || n > 1000000) {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
		}
		cpu().Period = &n
	}
	if o.changed("cpuset-cpus") {
		cpu().Cpus = o.cpusetCpus
	}
	if o.changed("cpuset-mems") {
		cpu().Mems = o.cpusetMems
	}
	if o.changed("pids-limit") {
		n := o.pidsLimit
		if n <= 0 {
			n = -1 // 0 and -1 both mean no limit, as in Docker
		}
		res.Pids = &specs.LinuxPids{Limit: &n}
		set = true
	}
	if o.changed("blkio-weight") {
		w := o.blkioWeight
		if w != 0 && (w < 10 || w > 1000) {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid argument %d for \"--blkio-weight\" flag: the range is 10 to 1000, or 0 to disable", w)
		}
		res.BlockIO = &specs.LinuxBlockIO{Weight: &w}
		set = true
	}
	if !set {
		return nil, nil
	}
	return res, nil
}

// updateContainer applies res to the container's running task, if any,
// then records res and the restart policy in the container's record, so
// that the next start keeps them. A failed live update changes nothing.
func updateContainer(ctx context.Context, cl *client.Client, ctr containers.Container, res *specs.LinuxResources, policy *containers.RestartPolicy) error {
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
