package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cgroupDirs lists the cgroup folders of container id that exist: one per
// v1 controller (/sys/fs/cgroup/<controller>/berth/<id>) and the v2 one.
func cgroupDirs(t *testing.T, id string) []string {
	t.Helper()
	var dirs []string
	for _, pattern := range []string{"/sys/fs/cgroup/*/berth/" + id, "/sys/fs/cgroup/berth/" + id} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, m...)
	}
	return dirs
}

// watchCgroups makes sure, when the test ends, that the containers are
// removed and no cgroup folder of theirs is left; a folder left after a
// failure is removed so that nothing outlives the test.
func watchCgroups(t *testing.T, d *daemon) *[]string {
	t.Helper()
	ids := new([]string)
	t.Cleanup(func() {
		if out, _, _ := d.berth("ps", "-aq", "--no-trunc"); strings.TrimSpace(out) != "" {
			d.berth(append([]string{"rm", "-f"}, strings.Fields(out)...)...)
		}
		for _, id := range *ids {
			for _, dir := range cgroupDirs(t, id) {
				t.Errorf("cgroup left after rm: %s", dir)
				os.Remove(dir)
			}
		}
	})
	return ids
}

// runDetached runs a detached container with args and remembers its id
// for watchCgroups.
func runDetached(t *testing.T, d *daemon, ids *[]string, args ...string) string {
	t.Helper()
	id := strings.TrimSpace(d.must(append([]string{"run", "-d"}, args...)...))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q, want an id", id)
	}
	*ids = append(*ids, id)
	return id
}

// removeChecked removes the container (a name or id) and checks that its
// cgroups went.
func removeChecked(t *testing.T, d *daemon, container string) {
	t.Helper()
	id := strings.TrimSpace(d.must("inspect", "-f", "{{.Id}}", container))
	d.must("rm", "-f", id)
	if dirs := cgroupDirs(t, id); len(dirs) > 0 {
		t.Errorf("cgroups of %s left after rm: %v", id[:12], dirs)
	}
}

// runNamed runs an attached container named name with args and remembers
// its id for watchCgroups; the caller removes it with removeChecked.
func runNamed(t *testing.T, d *daemon, ids *[]string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, code = d.berth(append([]string{"run", "--name", name}, args...)...)
	if id, _, c := d.berth("inspect", "-f", "{{.Id}}", name); c == 0 {
		*ids = append(*ids, strings.TrimSpace(id))
	} else {
		t.Fatalf("berth run %v made no container (exit %d, stderr %q)", args, code, stderr)
	}
	return stdout, stderr, code
}

// runOnce is `run --rm` that also checks that the container's cgroups go
// with it.
func runOnce(t *testing.T, d *daemon, ids *[]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	name := fmt.Sprintf("once-%d", len(*ids))
	stdout, stderr, code = runNamed(t, d, ids, name, args...)
	removeChecked(t, d, name)
	return stdout, stderr, code
}

// cgroupV2 tells whether the host has the unified hierarchy only.
func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// readCgroupFile reads a file of the container's cgroup: under the v1
// controller's hierarchy, or in the one v2 folder (controller ignored).
func readContainerCgroupFile(t *testing.T, id, controller, file string) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/cgroup", controller, "berth", id)
	if cgroupV2() {
		dir = filepath.Join("/sys/fs/cgroup", "berth", id)
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatalf("reading the container's cgroup: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// needCgroupV1 skips a test that reads v1 cgroup files on another layout.
func needCgroupV1(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err != nil {
		t.Skip("the host has no cgroup v1 memory controller at /sys/fs/cgroup/memory")
	}
}

func TestForkBombContainedByPidsLimit(t *testing.T) {
	d := containerDaemon(t)
	ids := watchCgroups(t, d)
	// --cpus keeps the bomb from starving the machine's other work.
	id := runDetached(t, d, ids, "--pids-limit", "50", "--cpus", "0.5", "busybox",
		"sh", "-c", "f(){ f|f& }; f; sleep 1000")
	if got := readContainerCgroupFile(t, id, "pids", "pids.max"); got != "50" {
		t.Errorf("pids.max = %q, want 50", got)
	}
	if cgroupV2() {
		if got := readContainerCgroupFile(t, id, "", "cpu.max"); got != "50000 100000" {
			t.Errorf("--cpus 0.5: cpu.max %q, want \"50000 100000\"", got)
		}
	} else if q, p := readContainerCgroupFile(t, id, "cpu", "cpu.cfs_quota_us"), readContainerCgroupFile(t, id, "cpu", "cpu.cfs_period_us"); q != "50000" || p != "100000" {
		t.Errorf("--cpus 0.5: cfs quota %s, period %s; want 50000 and 100000", q, p)
	}
	maxSeen := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		n, err := strconv.Atoi(readContainerCgroupFile(t, id, "pids", "pids.current"))
		if err != nil {
			t.Fatal(err)
		}
		maxSeen = max(maxSeen, n)
		if n > 50 {
			t.Fatalf("pids.current = %d under --pids-limit 50", n)
		}
	}
	if maxSeen < 40 {
		t.Errorf("the fork bomb reached only %d processes: it did not run", maxSeen)
	}
	// The host still answers while the bomb runs.
	if out := d.must("ps", "-q", "--no-trunc"); out != id+"\n" {
		t.Errorf("ps during the fork bomb: %q", out)
	}
	if out := d.must("inspect", "-f", "{{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}}", id); out != "50 500000000\n" {
		t.Errorf("inspect PidsLimit NanoCpus: %q", out)
	}
	removeChecked(t, d, id)
}

func TestMemoryLimitsInCgroup(t *testing.T) {
	needCgroupV1(t)
	d := containerDaemon(t)
	ids := watchCgroups(t, d)
	id := runDetached(t, d, ids, "--name", "lim", "-m", "64m", "--memory-swap", "128m", "--memory-reservation", "32m",
		"--cpu-shares", "512", "--cpuset-cpus", "0", "--oom-kill-disable", "busybox", "sleep", "60")
	for _, c := range []struct{ controller, file, want string }{
		{"memory", "memory.limit_in_bytes", "67108864"},
		{"memory", "memory.soft_limit_in_bytes", "33554432"},
		{"memory", "memory.memsw.limit_in_bytes", "134217728"},
		{"cpu", "cpu.shares", "512"},
		{"cpuset", "cpuset.cpus", "0"},
	} {
		if c.file == "memory.memsw.limit_in_bytes" {
			if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err != nil {
				continue // no swap accounting: the swap limit is dropped, as Docker does
			}
		}
		if got := readContainerCgroupFile(t, id, c.controller, c.file); got != c.want {
			t.Errorf("%s/%s = %q, want %q", c.controller, c.file, got, c.want)
		}
	}
	if got := readContainerCgroupFile(t, id, "memory", "memory.oom_control"); !strings.Contains(got, "oom_kill_disable 1") {
		t.Errorf("memory.oom_control under --oom-kill-disable:\n%s", got)
	}
	out := d.must("inspect", "-f", "{{json .HostConfig}}", "lim")
	var hc struct {
		Memory, MemorySwap, MemoryReservation, CpuShares, ShmSize int64
		CpusetCpus                                                string
		OomKillDisable                                            bool
		PidsLimit                                                 *int64
	}
	if err := json.Unmarshal([]byte(out), &hc); err != nil {
		t.Fatalf("inspect HostConfig: %v\n%s", err, out)
	}
	if hc.Memory != 64<<20 || hc.MemorySwap != 128<<20 || hc.MemoryReservation != 32<<20 || hc.CpuShares != 512 ||
		hc.CpusetCpus != "0" || !hc.OomKillDisable || hc.PidsLimit != nil || hc.ShmSize != 64<<20 {
		t.Errorf("inspect HostConfig: %s", out)
	}
	removeChecked(t, d, id)
}

func TestMemoryBombKilled(t *testing.T) {
	d := containerDaemon(t)
	ids := watchCgroups(t, d)
	// The string doubles until the 32 MB limit (no swap) is hit.
	_, errOut, code := runNamed(t, d, ids, "bomb", "--memory", "32m", "--memory-swap", "32m", "busybox",
		"sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done")
	if code != 137 {
		t.Fatalf("memory bomb under --memory 32m: exit %d, want 137 (killed); stderr %q", code, errOut)
	}
	// Docker warns when the kernel cannot limit swap (as on this VM).
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	if warned := strings.Contains(errOut, "does not support swap limit"); warned != (os.IsNotExist(err) && !cgroupV2()) {
		t.Errorf("swap limit warning shown %v, the kernel has swap accounting: %v; stderr %q", warned, err == nil, errOut)
	}
	removeChecked(t, d, "bomb")
}

func TestSeccompAndPrivileged(t *testing.T) {
	d := containerDaemon(t)
	ids := watchCgroups(t, d)
	// Default: Docker's seccomp profile is on and refuses unshare(2) and
	// mount(2) without CAP_SYS_ADMIN.
	out, errOut, code := runOnce(t, d, ids, "busybox", "sh", "-c",
		"grep ^Seccomp: /proc/self/status; unshare -U true && echo unshared; mount -t tmpfs none /tmp && echo mounted; true")
	if code != 0 || !strings.Contains(out, "Seccomp:\t2") || strings.Contains(out, "unshared") || strings.Contains(out, "mounted") {
		t.Errorf("default confinement: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	// seccomp=unconfined lifts the filter: a user namespace needs no
	// capability, only the filter stopped it.
	out, errOut, code = runOnce(t, d, ids, "--security-opt", "seccomp=unconfined", "busybox", "sh", "-c",
		"grep ^Seccomp: /proc/self/status; unshare -U true && echo unshared")
	if code != 0 || !strings.Contains(out, "Seccomp:\t0") || !strings.Contains(out, "unshared") {
		t.Errorf("seccomp=unconfined: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	// --privileged: every capability, no filter, writable /sys, host devices.
	out, errOut, code = runOnce(t, d, ids, "--privileged", "busybox", "sh", "-c",
		"grep ^Seccomp: /proc/self/status; unshare -U true && echo unshared; mount -t tmpfs none /tmp && echo mounted; grep ' /sys sysfs rw' /proc/mounts >/dev/null && echo sysrw; test -e /dev/kmsg && echo kmsg")
	for _, want := range []string{"Seccomp:\t0", "unshared", "mounted", "sysrw", "kmsg"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("--privileged: want %q; exit %d\nstdout: %s\nstderr: %s", want, code, out, errOut)
		}
	}
	// no-new-privileges sets the bit.
	out, _, code = runOnce(t, d, ids, "--security-opt", "no-new-privileges", "busybox", "grep", "^NoNewPrivs:", "/proc/self/status")
	if code != 0 || out != "NoNewPrivs:\t1\n" {
		t.Errorf("--security-opt no-new-privileges: exit %d, %q", code, out)
	}
	out, _, code = runOnce(t, d, ids, "--security-opt", "no-new-privileges:false", "busybox", "grep", "^NoNewPrivs:", "/proc/self/status")
	if code != 0 || out != "NoNewPrivs:\t0\n" {
		t.Errorf("--security-opt no-new-privileges:false: exit %d, %q", code, out)
	}
}

func TestCustomSeccompProfile(t *testing.T) {
	d := containerDaemon(t)
	ids := watchCgroups(t, d)
	profile := filepath.Join(t.TempDir(), "no-mkdir.json")
	if err := os.WriteFile(profile, []byte(`{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runNamed(t, d, ids, "nomkdir", "--security-opt", "seccomp="+profile, "busybox", "sh", "-c",
		"touch /tmp/file && echo touched; mkdir /tmp/dir && echo made")
	if code == 0 || !strings.Contains(out, "touched") || strings.Contains(out, "made") || !strings.Contains(errOut, "mkdir") {
		t.Errorf("profile blocking mkdir: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if out := d.must("inspect", "-f", "{{json .HostConfig.SecurityOpt}}", "nomkdir"); !strings.Contains(out, `seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"`) {
		t.Errorf("inspect SecurityOpt: %s", out)
	}
	removeChecked(t, d, "nomkdir")
	// Without the profile mkdir works.
	if out, errOut, code := runOnce(t, d, ids, "busybox", "mkdir", "/tmp/dir"); code != 0 {
		t.Errorf("mkdir under the default profile: exit %d, %s %s", code, out, errOut)
	}
}

func TestCapabilities(t *testing.T) {
	d := containerDaemon(t)
	ids := watchCgroups(t, d)
	if _, errOut, code := runOnce(t, d, ids, "busybox", "chown", "1", "/tmp"); code != 0 {
		t.Errorf("chown with the default capabilities: exit %d, %s", code, errOut)
	}
	_, errOut, code := runOnce(t, d, ids, "--cap-drop", "ALL", "busybox", "chown", "1", "/tmp")
	if code == 0 || !strings.Contains(errOut, "Operation not permitted") {
		t.Errorf("chown with --cap-drop ALL: exit %d, stderr %q", code, errOut)
	}
	// Names are case-insensitive, with or without CAP_.
	out, errOut, code := runNamed(t, d, ids, "caps", "--cap-drop", "all", "--cap-add", "chown", "--cap-add", "CAP_NET_BIND_SERVICE",
		"busybox", "sh", "-c", "chown 1 /tmp && grep ^CapEff: /proc/self/status")
	// CAP_CHOWN is bit 0, CAP_NET_BIND_SERVICE bit 10.
	if code != 0 || out != "CapEff:\t0000000000000401\n" {
		t.Errorf("--cap-drop all --cap-add chown,CAP_NET_BIND_SERVICE: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out := d.must("inspect", "-f", "{{json .HostConfig.CapAdd}} {{json .HostConfig.CapDrop}} {{.HostConfig.Privileged}}", "caps"); out != `["CAP_CHOWN","CAP_NET_BIND_SERVICE"] ["ALL"] false`+"\n" {
		t.Errorf("inspect CapAdd CapDrop Privileged: %s", out)
	}
	removeChecked(t, d, "caps")
	// --device: the node appears; with permission r the device cgroup
	// refuses opening it for writing, with rw it lets the open through (an
	// unbound loop device then has no room).
	if _, err := os.Stat("/dev/loop7"); err == nil {
		for perms, wantErr := range map[string]string{"r": "Operation not permitted", "rw": "No space left on device"} {
			out, errOut, code := runOnce(t, d, ids, "--device", "/dev/loop7:/dev/myloop:"+perms, "busybox", "sh", "-c",
				"test -b /dev/myloop && echo block; cat /dev/myloop >/dev/null && echo read; echo x > /dev/myloop; true")
			if code != 0 || out != "block\nread\n" || !strings.Contains(errOut, wantErr) {
				t.Errorf("--device /dev/loop7:/dev/myloop:%s: exit %d, stdout %q, stderr %q (want %q)", perms, code, out, errOut, wantErr)
			}
		}
	} else {
		t.Log("no /dev/loop7 on this host: --device not checked")
	}
	// --cap-add SYS_ADMIN also opens the seccomp profile's mount rule.
	if out, errOut, code := runOnce(t, d, ids, "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c", "mount -t tmpfs none /tmp && echo mounted"); code != 0 || out != "mounted\n" {
		t.Errorf("mount with --cap-add SYS_ADMIN: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestReadOnlyTmpfsUlimitShm(t *testing.T) {
	d := containerDaemon(t)
	ids := watchCgroups(t, d)
	out, errOut, code := runNamed(t, d, ids, "ro", "--read-only", "--tmpfs", "/run", "--tmpfs", "/scratch:size=1m,mode=1777",
		"--ulimit", "nofile=1024:2048", "--ulimit", "nproc=500", "--shm-size", "128m", "busybox", "sh", "-c",
		`touch /x 2>/dev/null && echo rootwritable
touch /run/x && echo runwritable
ulimit -n; ulimit -Hn; ulimit -u
grep -E ' /(scratch|dev/shm) ' /proc/mounts | cut -d' ' -f2,4`)
	want := "runwritable\n1024\n2048\n500\n/scratch rw,nosuid,nodev,noexec,relatime,size=1024k\n/dev/shm rw,nosuid,nodev,noexec,relatime,size=131072k\n"
	got := out
	if code != 0 || !sameLines(got, want) {
		t.Errorf("--read-only --tmpfs --ulimit --shm-size: exit %d, stderr %q\ngot:\n%s\nwant:\n%s", code, errOut, got, want)
	}
	out = d.must("inspect", "-f", "{{.HostConfig.ReadonlyRootfs}} {{json .HostConfig.Tmpfs}} {{json .HostConfig.Ulimits}} {{.HostConfig.ShmSize}}", "ro")
	if want := `true {"/run":"","/scratch":"size=1m,mode=1777"} [{"Name":"nofile","Hard":2048,"Soft":1024},{"Name":"nproc","Hard":500,"Soft":500}] 134217728` + "\n"; out != want {
		t.Errorf("inspect:\n got %s\nwant %s", out, want)
	}
	removeChecked(t, d, "ro")
}

// sameLines compares two outputs line by line, ignoring /proc/mounts order
// and the mount options the kernel adds (mode=, uid=, ...) after those given.
func sameLines(got, want string) bool {
	g, w := strings.Split(strings.TrimSpace(got), "\n"), strings.Split(strings.TrimSpace(want), "\n")
	if len(g) != len(w) {
		return false
	}
	for _, wl := range w {
		found := false
		for _, gl := range g {
			if gl == wl || (strings.HasPrefix(wl, "/") && strings.HasPrefix(gl+",", wl+",")) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func TestBadLimitValues(t *testing.T) {
	d := containerDaemon(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--memory", "abc"}, `invalid argument "abc" for "-m, --memory" flag: invalid size: 'abc'`},
		{[]string{"--cpus", "x"}, `invalid argument "x" for "--cpus" flag: failed to parse x as a rational number`},
		{[]string{"--ulimit", "nofile=2048:1024"}, "ulimit soft limit must be less than or equal to hard limit"},
		{[]string{"--ulimit", "bogus=1"}, "invalid ulimit type: bogus"},
		{[]string{"--memory", "32m", "--memory-swap", "16m"}, "Minimum memoryswap limit should be larger than memory limit"},
		{[]string{"--memory", "1m"}, "Minimum memory limit allowed is 6MB"},
		{[]string{"--memory-swap", "64m"}, "You should always set the Memory limit when using Memoryswap limit"},
		{[]string{"--cpus", "0.5", "--cpu-quota", "20000"}, "Conflicting options: Nano CPUs and CPU Quota cannot both be set"},
		{[]string{"--cpu-period", "10"}, "CPU cfs period can not be less than 1ms"},
		{[]string{"--cpus", "1000"}, "Range of CPUs is from 0.01 to"},
		{[]string{"--blkio-weight", "5"}, "Range of blkio weight is from 10 to 1000"},
		{[]string{"--cpuset-cpus", "0-x"}, "invalid value 0-x for cpuset cpus"},
		{[]string{"--cap-add", "NOPE"}, `unknown capability: "NOPE"`},
		{[]string{"--security-opt", "seccomp=/no/such/profile.json"}, "opening seccomp profile (/no/such/profile.json) failed"},
		{[]string{"--security-opt", "apparmor=myprofile"}, "is not supported"},
		{[]string{"--security-opt", "bogus"}, `invalid --security-opt "bogus"`},
		{[]string{"--tmpfs", ":size=1m"}, "invalid --tmpfs"},
	} {
		for _, cmd := range []string{"run", "create"} {
			args := append(append([]string{cmd}, c.args...), "busybox", "true")
			_, errOut, code := d.berth(args...)
			if code != 125 && !(cmd == "create" && code == 1) {
				t.Errorf("berth %s: exit %d, want 125; stderr %q", strings.Join(args, " "), code, errOut)
			}
			if !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 1 {
				t.Errorf("berth %s: stderr %q, want one line with %q", strings.Join(args, " "), errOut, c.want)
			}
		}
	}
	// Nothing was created.
	if out := d.must("ps", "-aq"); out != "" {
		t.Errorf("containers after refused flags: %q", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.root, "containers")); len(entries) > 0 {
		t.Errorf("container folders after refused flags: %d", len(entries))
	}
}
