package command

import (
	"testing"

	typesv1 "github.com/berth-engine/berth/proto/types/v1"
	"github.com/berth-engine/berth/services/containers"
)

func TestNewStatsRow(t *testing.T) {
	target := statsTarget{arg: "web", ctr: containers.Container{ID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Name: "web"}}
	prev := &typesv1.Metrics{CpuUsageNs: 1_000_000_000, SystemCpuNs: 100_000_000_000, OnlineCpus: 2}
	cur := &typesv1.Metrics{
		// Half a CPU second over one wall second on 2 CPUs (2 s of system time).
		CpuUsageNs: 1_500_000_000, SystemCpuNs: 102_000_000_000, OnlineCpus: 2,
		MemoryUsage: 40 << 20, MemoryInactiveFile: 8 << 20, MemoryLimit: 64 << 20,
		NetRxBytes: 1500, NetTxBytes: 648, BlkioReadBytes: 4096, BlkioWriteBytes: 12_300_000,
		PidsCurrent: 3,
	}
	got := newStatsRow(target, prev, cur, false)
	want := statsRow{
		BlockIO: "4.1kB / 12.3MB", CPUPerc: "50.00%", Container: "web", ID: "0123456789ab",
		MemPerc: "50.00%", MemUsage: "32MiB / 64MiB", Name: "web", NetIO: "1.5kB / 648B", PIDs: "3",
	}
	if got != want {
		t.Errorf("newStatsRow =\n%+v\nwant\n%+v", got, want)
	}
	// No previous sample, no sample at all: zeros, as Docker shows them.
	if got := newStatsRow(target, nil, cur, true); got.CPUPerc != "0.00%" || got.ID != target.ctr.ID {
		t.Errorf("first sample: CPU %s, ID %s; want 0.00%% and the full ID", got.CPUPerc, got.ID)
	}
	if got := newStatsRow(target, nil, nil, false); got.MemUsage != "0B / 0B" || got.PIDs != "0" || got.NetIO != "0B / 0B" {
		t.Errorf("no sample: %+v", got)
	}
}
