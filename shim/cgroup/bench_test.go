package cgroup

import (
	"os"
	"testing"

	typesv1 "github.com/berth-engine/berth/proto/types/v1"
)

func BenchmarkStats(b *testing.B) {
	cg, err := Load(os.Getpid())
	if err != nil {
		b.Skip(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := cg.Stats(&typesv1.Metrics{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHost(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		hostCPU(procStat)
		hostMemory(procMeminfo)
		netDev("/proc/self/net/dev")
	}
}
