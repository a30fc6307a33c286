package command

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/pflag"
)

func parseUpdateFlags(t *testing.T, args ...string) (*specs.LinuxResources, error) {
	t.Helper()
	var o updateOptions
	fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err // a value the flag cannot hold
	}
	o.changed = func(name string) bool { return fs.Changed(name) }
	return o.resources()
}

func TestUpdateResourcesFromFlags(t *testing.T) {
	res, err := parseUpdateFlags(t, "--memory", "64m", "--memory-swap", "-1", "--memory-reservation", "32m",
		"--cpus", "0.5", "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "100", "--blkio-weight", "300")
	if err != nil {
		t.Fatal(err)
	}
	if *res.Memory.Limit != 64<<20 || *res.Memory.Swap != -1 || *res.Memory.Reservation != 32<<20 {
		t.Errorf("memory = %d/%d/%d", *res.Memory.Limit, *res.Memory.Swap, *res.Memory.Reservation)
	}
	if *res.CPU.Quota != 50000 || *res.CPU.Period != 100000 || *res.CPU.Shares != 512 || res.CPU.Cpus != "0" {
		t.Errorf("cpu = %+v", res.CPU)
	}
	if *res.Pids.Limit != 100 || *res.BlockIO.Weight != 300 {
		t.Errorf("pids %d, blkio weight %d", *res.Pids.Limit, *res.BlockIO.Weight)
	}
	if res, err := parseUpdateFlags(t, "--pids-limit", "0"); err != nil || *res.Pids.Limit != -1 {
		t.Errorf("--pids-limit 0 gives %v, %v; want -1 (no limit)", res, err)
	}
	if res, err := parseUpdateFlags(t, "--restart", "always"); res != nil || err != nil {
		t.Errorf("no resource flag gives %v, %v; want none", res, err)
	}

	for _, bad := range [][]string{
		{"--memory", "abc"},
		{"--memory", "1m"},
		{"--memory", "64m", "--memory-swap", "32m"},
		{"--memory", "32m", "--memory-reservation", "64m"},
		{"--cpus", "0.5", "--cpu-quota", "50000"},
		{"--cpus", "1000"},
		{"--cpu-quota", "10"},
		{"--blkio-weight", "5"},
	} {
		if _, err := parseUpdateFlags(t, bad...); err == nil {
			t.Errorf("update %s did not fail", strings.Join(bad, " "))
		}
	}
}

func TestMergeResources(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	dst := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(128 << 20)}}
	if err := checkSwap(dst, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(256 << 20)}}); err == nil {
		t.Error("a memory limit above the memory+swap limit set was accepted without --memory-swap")
	}
	src := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(96 << 20)}, Pids: &specs.LinuxPids{Limit: i64(50)}}
	if err := checkSwap(dst, src); err != nil {
		t.Fatal(err)
	}
	mergeResources(dst, src)
	if *dst.Memory.Limit != 96<<20 || *dst.Memory.Swap != 128<<20 || *dst.Pids.Limit != 50 {
		t.Errorf("merged = memory %d swap %d pids %d", *dst.Memory.Limit, *dst.Memory.Swap, *dst.Pids.Limit)
	}
}
