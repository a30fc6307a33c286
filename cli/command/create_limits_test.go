package command

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/tasks/ocispec"
)

func parseLimits(t *testing.T, args ...string) (ocispec.RunOptions, hostConfigExt, error) {
	t.Helper()
	var o limitOptions
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		return ocispec.RunOptions{}, hostConfigExt{}, err
	}
	var ro ocispec.RunOptions
	ext, err := o.apply(&ro)
	return ro, ext, err
}

func TestLimitFlags(t *testing.T) {
	ro, ext, err := parseLimits(t, "-m", "64m", "--memory-swap", "-1", "--cpus", "1.5", "-c", "512", "--pids-limit", "50",
		"--shm-size", "1g", "--ulimit", "nofile=10:20", "--ulimit", "nofile=30:40", "--ulimit", "nproc=5",
		"--cap-add", "net_admin", "--cap-drop", "CAP_CHOWN", "--read-only", "--tmpfs", "/run:size=1m,exec,ro",
		"--security-opt", "no-new-privileges", "--security-opt", "seccomp=unconfined", "--device", "/dev/null:/dev/n:r")
	if err != nil {
		t.Fatal(err)
	}
	r := ro.Resources
	if r.Memory != 64<<20 || r.MemorySwap != -1 || r.NanoCPUs != 1.5e9 || r.CPUShares != 512 || r.PidsLimit != 50 || r.ShmSize != 1<<30 {
		t.Errorf("resources = %+v", r)
	}
	if want := []ocispec.Ulimit{{Name: "nofile", Soft: 30, Hard: 40}, {Name: "nproc", Soft: 5, Hard: 5}}; !slices.Equal(r.Ulimits, want) {
		t.Errorf("ulimits = %+v", r.Ulimits)
	}
	sec := ro.Security
	if !slices.Equal(sec.CapAdd, []string{"CAP_NET_ADMIN"}) || !slices.Equal(sec.CapDrop, []string{"CAP_CHOWN"}) ||
		!sec.NoNewPrivileges || !sec.SeccompUnconfined || sec.Privileged {
		t.Errorf("security = %+v", sec)
	}
	if len(sec.Devices) != 1 || sec.Devices[0] != (ocispec.Device{HostPath: "/dev/null", ContainerPath: "/dev/n", Permissions: "r"}) {
		t.Errorf("devices = %+v", sec.Devices)
	}
	if !ro.ReadOnlyRoot || len(ro.Mounts) != 1 {
		t.Fatalf("read-only %v, mounts %+v", ro.ReadOnlyRoot, ro.Mounts)
	}
	if m := ro.Mounts[0]; m.Type != "tmpfs" || m.Destination != "/run" || !m.ReadOnly || !slices.Equal(m.Options, []string{"size=1048576", "exec"}) {
		t.Errorf("tmpfs = %+v", m)
	}
	if ext.NanoCpus != 1.5e9 || ext.Tmpfs["/run"] != "size=1m,exec,ro" || !slices.Equal(ext.SecurityOpt, []string{"no-new-privileges", "seccomp=unconfined"}) ||
		len(ext.Ulimits) != 2 || ext.Devices[0].PathInContainer != "/dev/n" {
		t.Errorf("inspect extension = %+v", ext)
	}
}

func TestLimitFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--memory", "abc"}, "invalid size: 'abc'"},
		{[]string{"--memory-swap", "-2"}, "invalid size: '-2'"},
		{[]string{"--cpus", "0.0000000001"}, "value is too precise"},
		{[]string{"--cpus", "-1"}, "out of range"},
		{[]string{"--ulimit", "nofile"}, "invalid ulimit argument"},
		{[]string{"--security-opt", "no-new-privileges=maybe"}, "takes true or false"},
		{[]string{"--security-opt", "seccomp"}, "use seccomp=unconfined or seccomp=PROFILE.json"},
		{[]string{"--device", "/dev/null:/a:/b:c"}, "invalid device specification"},
		{[]string{"--device", "/dev/null:/a:x"}, "invalid device specification"},
		{[]string{"--cap-drop", "bogus"}, "unknown capability"},
		{[]string{"--memory", "64m", "--memory-reservation", "128m"}, "memory reservation"},
	} {
		_, _, err := parseLimits(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line with %q", c.args, err, c.want)
		}
	}
}

func TestSeccompProfileFlag(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte("{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": []\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ro, ext, err := parseLimits(t, "--security-opt", "seccomp="+good)
	if err != nil {
		t.Fatal(err)
	}
	const compact = `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[]}`
	if string(ro.Security.SeccompProfile) != compact || ext.SecurityOpt[0] != "seccomp="+compact {
		t.Errorf("profile %s, shown %q", ro.Security.SeccompProfile, ext.SecurityOpt)
	}
	ro, ext, err = parseLimits(t, "--security-opt", "seccomp=unconfined", "--security-opt", "seccomp=builtin")
	if err != nil || ro.Security.SeccompUnconfined || ro.Security.SeccompProfile != nil || ext.SecurityOpt[1] != "seccomp=builtin" {
		t.Errorf("seccomp=builtin after unconfined: %+v, %q, %v", ro.Security, ext.SecurityOpt, err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseLimits(t, "--security-opt", "seccomp="+bad); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a bad profile: %v", err)
	}
}

func TestParseDevice(t *testing.T) {
	for in, want := range map[string]ocispec.Device{
		"/dev/fuse":             {HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rwm"},
		"/dev/fuse:rw":          {HostPath: "/dev/fuse", ContainerPath: "/dev/fuse", Permissions: "rw"},
		"/dev/fuse:/dev/f":      {HostPath: "/dev/fuse", ContainerPath: "/dev/f", Permissions: "rwm"},
		"/dev/fuse:/dev/f:m":    {HostPath: "/dev/fuse", ContainerPath: "/dev/f", Permissions: "m"},
		"/dev/sda:/dev/xvda:rw": {HostPath: "/dev/sda", ContainerPath: "/dev/xvda", Permissions: "rw"},
	} {
		got, err := parseDevice(in)
		if err != nil || got != want {
			t.Errorf("parseDevice(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
}
