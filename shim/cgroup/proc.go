package cgroup

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

const (
	procStat    = "/proc/stat"
	procMeminfo = "/proc/meminfo"
	// clockTicks is USER_HZ, the unit of /proc/stat; 100 on every Linux
	// architecture berth runs on.
	clockTicks = 100
)

// hostCPU returns the host's CPU time in nanoseconds, all CPUs, and the
// number of online CPUs, from /proc/stat as Docker reads it: user, nice,
// system, idle, iowait, irq and softirq of the "cpu" line.
func hostCPU(path string) (uint64, uint32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the host's CPU time: %w", err)
	}
	var total uint64
	var cpus uint32
	found := false
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(line, "cpu") {
			continue // the intr line alone has hundreds of fields
		}
		fields := strings.Fields(line)
		switch name := fields[0]; {
		case name == "cpu":
			if len(fields) < 8 {
				return 0, 0, fmt.Errorf("reading the host's CPU time: %s: short cpu line %q", path, strings.TrimSpace(line))
			}
			for _, f := range fields[1:8] {
				v, err := strconv.ParseUint(f, 10, 64)
				if err != nil {
					return 0, 0, fmt.Errorf("reading the host's CPU time: %s: %w", path, err)
				}
				total += v
			}
			found = true
		case strings.HasPrefix(name, "cpu"):
			cpus++
		}
	}
	if !found {
		return 0, 0, fmt.Errorf("reading the host's CPU time: %s has no cpu line", path)
	}
	return total * (1e9 / clockTicks), cpus, nil
}

// hostMemory returns MemTotal in bytes.
func hostMemory(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading the host's memory: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			break
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading the host's memory: %s: %w", path, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("reading the host's memory: %s has no MemTotal", path)
}

// netDev adds up the received and sent bytes of the interfaces in a
// /proc/<pid>/net/dev file, loopback excepted.
func netDev(path string) (rx, tx uint64, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the network counters: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue // the two header lines
		}
		if strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			return 0, 0, fmt.Errorf("reading the network counters: %s: short line for %s", path, strings.TrimSpace(name))
		}
		r, err1 := strconv.ParseUint(f[0], 10, 64)
		t, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("reading the network counters: %s: bad numbers for %s", path, strings.TrimSpace(name))
		}
		rx += r
		tx += t
	}
	return rx, tx, sc.Err()
}
