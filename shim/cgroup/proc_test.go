package cgroup

import (
	"os"
	"path/filepath"
	"testing"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHostCPU(t *testing.T) {
	p := writeFile(t, `cpu  100 2 30 400 5 6 7 8 0 0
cpu0 50 1 15 200 2 3 3 4 0 0
cpu1 50 1 15 200 3 3 4 4 0 0
intr 12345
ctxt 999
`)
	total, cpus, err := hostCPU(p)
	if err != nil {
		t.Fatal(err)
	}
	// user..softirq: 100+2+30+400+5+6+7 ticks of 10 ms; steal is left out as Docker does.
	if want := uint64(550) * 10_000_000; total != want || cpus != 2 {
		t.Errorf("hostCPU = %d ns, %d cpus; want %d ns, 2 cpus", total, cpus, want)
	}
	if _, _, err := hostCPU(writeFile(t, "intr 1\n")); err == nil {
		t.Error("hostCPU of a file without a cpu line did not fail")
	}
}

func TestHostMemory(t *testing.T) {
	got, err := hostMemory(writeFile(t, "MemTotal:       24683520 kB\nMemFree:        1 kB\n"))
	if err != nil || got != 24683520*1024 {
		t.Errorf("hostMemory = %d, %v; want %d", got, err, 24683520*1024)
	}
}

func TestNetDev(t *testing.T) {
	p := writeFile(t, `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    9999      10    0    0    0     0          0         0     9999      10    0    0    0     0       0          0
  eth0:    1500      12    0    0    0     0          0         0      648       8    0    0    0     0       0          0
  eth1:     500       2    0    0    0     0          0         0       52       1    0    0    0     0       0          0
`)
	rx, tx, err := netDev(p)
	if err != nil || rx != 2000 || tx != 700 {
		t.Errorf("netDev = %d, %d, %v; want 2000, 700 without lo", rx, tx, err)
	}
}

// TestSampleSelf samples the cgroup of the test process: it exists on any
// Linux host, for any user.
func TestSampleSelf(t *testing.T) {
	cg, err := Load(os.Getpid())
	if err != nil {
		t.Skipf("no readable cgroup here: %v", err)
	}
	m, err := Sample(cg, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.GetCpuUsageNs() == 0 || m.GetSystemCpuNs() == 0 || m.GetOnlineCpus() == 0 || m.GetMemoryLimit() == 0 {
		t.Errorf("sample of the test's own cgroup lacks counters: %v", m)
	}
}
