package ocispec

import (
	"slices"
	"strings"
	"testing"

	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-engine/berth/internal/errdefs"
)

var shCmd = imagespec.ImageConfig{Cmd: []string{"sh"}}

func TestNormalizeCapabilities(t *testing.T) {
	got, err := NormalizeCapabilities([]string{"chown", "Cap_Net_Admin", " CAP_SYS_ADMIN ", "all", "CHOWN"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "ALL"}; !slices.Equal(got, want) {
		t.Errorf("NormalizeCapabilities = %q, want %q", got, want)
	}
	if _, err := NormalizeCapabilities([]string{"NOPE"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `unknown capability: "NOPE"`) {
		t.Errorf("unknown capability: %v", err)
	}
}

func TestCapabilities(t *testing.T) {
	all := AllCapabilities()
	if len(all) < 30 || !slices.Contains(all, "CAP_CHOWN") {
		t.Fatalf("AllCapabilities = %q", all)
	}
	for _, c := range []struct {
		name       string
		privileged bool
		add, drop  []string
		want       func([]string) bool
	}{
		{"defaults", false, nil, nil, func(c []string) bool { return slices.Equal(c, DefaultCapabilities()) }},
		{"drop one, add one", false, []string{"NET_ADMIN"}, []string{"chown"}, func(c []string) bool {
			return !slices.Contains(c, "CAP_CHOWN") && slices.Contains(c, "CAP_NET_ADMIN") && len(c) == len(DefaultCapabilities())
		}},
		{"drop ALL", false, nil, []string{"ALL"}, func(c []string) bool { return c != nil && len(c) == 0 }},
		{"drop ALL add one", false, []string{"chown"}, []string{"all"}, func(c []string) bool { return slices.Equal(c, []string{"CAP_CHOWN"}) }},
		{"add ALL drop one", false, []string{"ALL"}, []string{"SYS_ADMIN"}, func(c []string) bool {
			return len(c) == len(all)-1 && !slices.Contains(c, "CAP_SYS_ADMIN")
		}},
		{"privileged ignores drops", true, nil, []string{"ALL"}, func(c []string) bool { return slices.Equal(c, all) }},
	} {
		got, err := Capabilities(c.privileged, c.add, c.drop)
		if err != nil || !c.want(got) {
			t.Errorf("%s: %q, %v", c.name, got, err)
		}
	}
}

func TestDefaultSeccomp(t *testing.T) {
	s := generate(t, shCmd, RunOptions{})
	sc := s.Linux.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActErrno || len(sc.Syscalls) == 0 {
		t.Fatalf("default seccomp profile missing: %+v", sc)
	}
	// The default profile allows mount only with CAP_SYS_ADMIN.
	allows := func(sc *specs.LinuxSeccomp, name string) bool {
		for _, r := range sc.Syscalls {
			if r.Action == specs.ActAllow && len(r.Args) == 0 && slices.Contains(r.Names, name) {
				return true
			}
		}
		return false
	}
	if allows(sc, "mount") || !allows(sc, "read") {
		t.Error("default profile: mount allowed or read refused without CAP_SYS_ADMIN")
	}
	s = generate(t, shCmd, RunOptions{Security: Security{CapAdd: []string{"SYS_ADMIN"}}})
	if !allows(s.Linux.Seccomp, "mount") {
		t.Error("default profile with CAP_SYS_ADMIN does not allow mount")
	}
	if s := generate(t, shCmd, RunOptions{Security: Security{SeccompUnconfined: true}}); s.Linux.Seccomp != nil {
		t.Error("seccomp=unconfined still has a profile")
	}
}

func TestCustomSeccomp(t *testing.T) {
	profile := `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"},
		{"names":["reboot"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_BOOT"]}}]}`
	s := generate(t, shCmd, RunOptions{Security: Security{SeccompProfile: []byte(profile)}})
	sc := s.Linux.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActAllow || len(sc.Syscalls) != 1 || sc.Syscalls[0].Names[0] != "mkdir" {
		t.Fatalf("custom profile = %+v", sc)
	}
	for _, bad := range []string{`{`, `{}`, `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ERRNO"}]}`} {
		_, err := Generate(t.Context(), shCmd, RunOptions{Security: Security{SeccompProfile: []byte(bad)}}, newRootfs(t))
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("profile %s: %v, want invalid argument", bad, err)
		}
	}
}

func TestPrivileged(t *testing.T) {
	s := generate(t, shCmd, RunOptions{Security: Security{Privileged: true, SeccompProfile: []byte(`{"defaultAction":"SCMP_ACT_ERRNO"}`)}})
	if s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("privileged: seccomp %v, masked %q, read-only %q", s.Linux.Seccomp != nil, s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if !slices.Equal(s.Process.Capabilities.Bounding, AllCapabilities()) {
		t.Errorf("privileged caps = %q", s.Process.Capabilities.Bounding)
	}
	for _, dst := range []string{"/sys", "/sys/fs/cgroup"} {
		if m, _ := mountAt(s, dst); slices.Contains(m.Options, "ro") {
			t.Errorf("privileged %s is read-only: %q", dst, m.Options)
		}
	}
	if d := s.Linux.Resources.Devices; len(d) != 1 || !d[0].Allow || d[0].Access != "rwm" || d[0].Major != nil {
		t.Errorf("privileged device rules = %+v, want allow all", d)
	}
	if !slices.ContainsFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool {
		return d.Path == "/dev/null" && d.Type == "c" && d.Major == 1 && d.Minor == 3
	}) {
		t.Errorf("privileged devices lack /dev/null: %+v", s.Linux.Devices)
	}
	if slices.ContainsFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return strings.HasPrefix(d.Path, "/dev/pts/") }) {
		t.Error("privileged devices copy the host's /dev/pts")
	}
}

func TestDevice(t *testing.T) {
	s := generate(t, shCmd, RunOptions{Security: Security{Devices: []Device{{HostPath: "/dev/null", ContainerPath: "/dev/mynull", Permissions: "rw"}}}})
	if !slices.ContainsFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/mynull" && d.Major == 1 && d.Minor == 3 }) {
		t.Errorf("devices = %+v", s.Linux.Devices)
	}
	last := s.Linux.Resources.Devices[len(s.Linux.Resources.Devices)-1]
	if !last.Allow || last.Type != "c" || *last.Major != 1 || *last.Minor != 3 || last.Access != "rw" {
		t.Errorf("device rule = %+v", last)
	}
	for _, d := range []Device{{HostPath: "/etc/passwd"}, {HostPath: "/no/such/device"}, {HostPath: "/dev/null", Permissions: "x"}} {
		if _, err := Generate(t.Context(), shCmd, RunOptions{Security: Security{Devices: []Device{d}}}, newRootfs(t)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("device %+v: %v, want invalid argument", d, err)
		}
	}
}

func TestNoNewPrivilegesAndCgroupsPath(t *testing.T) {
	s := generate(t, shCmd, RunOptions{Security: Security{NoNewPrivileges: true}, CgroupsPath: "/berth/abc"})
	if !s.Process.NoNewPrivileges || s.Linux.CgroupsPath != "/berth/abc" {
		t.Errorf("no-new-privileges %v, cgroupsPath %q", s.Process.NoNewPrivileges, s.Linux.CgroupsPath)
	}
}
