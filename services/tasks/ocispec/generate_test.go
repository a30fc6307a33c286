package ocispec

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-engine/berth/internal/errdefs"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
nohome:x:1001:1001:::/bin/sh
`

const testGroup = `root:x:0:
wheel:x:10:root,alice
audio:x:29:alice
alice:x:1000:
staff:x:50:
nogroup:x:65534:
`

// newRootfs makes a rootfs holding etc/passwd and etc/group.
func newRootfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc", "passwd"), testPasswd)
	writeFile(t, filepath.Join(root, "etc", "group"), testGroup)
	return root
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func generate(t *testing.T, img imagespec.ImageConfig, opts RunOptions, extra ...SpecOpt) *specs.Spec {
	t.Helper()
	s, err := Generate(context.Background(), img, opts, newRootfs(t), extra...)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return s
}

func envValue(env []string, key string) (string, bool) {
	for _, e := range env {
		if k, v, _ := strings.Cut(e, "="); k == key {
			return v, true
		}
	}
	return "", false
}

func TestMergeArgs(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		imgEntrypoint, imgCmd []string
		runEntrypoint, runCmd []string
		want                  []string
		wantErr               bool
	}{
		{name: "image cmd only", imgCmd: []string{"sh"}, want: []string{"sh"}},
		{name: "run args replace image cmd", imgCmd: []string{"sh"}, runCmd: []string{"echo", "hi"}, want: []string{"echo", "hi"}},
		{name: "image entrypoint and cmd", imgEntrypoint: []string{"/entry.sh"}, imgCmd: []string{"serve", "-v"}, want: []string{"/entry.sh", "serve", "-v"}},
		{name: "run args become entrypoint arguments", imgEntrypoint: []string{"/entry.sh"}, imgCmd: []string{"serve"}, runCmd: []string{"debug"}, want: []string{"/entry.sh", "debug"}},
		{name: "run entrypoint drops image cmd", imgEntrypoint: []string{"/entry.sh"}, imgCmd: []string{"serve"}, runEntrypoint: []string{"/bin/ls"}, want: []string{"/bin/ls"}},
		{name: "run entrypoint with run args", imgEntrypoint: []string{"/entry.sh"}, imgCmd: []string{"serve"}, runEntrypoint: []string{"/bin/ls"}, runCmd: []string{"-l", "/"}, want: []string{"/bin/ls", "-l", "/"}},
		{name: "run entrypoint is one argv element", imgCmd: []string{"sh"}, runEntrypoint: []string{"sh -c"}, want: []string{"sh -c"}},
		{name: "entrypoint reset with run args", imgEntrypoint: []string{"/entry.sh"}, imgCmd: []string{"serve"}, runEntrypoint: []string{""}, runCmd: []string{"echo", "x"}, want: []string{"echo", "x"}},
		{name: "entrypoint reset drops image cmd too", imgEntrypoint: []string{"/entry.sh"}, imgCmd: []string{"serve"}, runEntrypoint: []string{""}, wantErr: true},
		{name: "empty non-nil entrypoint keeps image cmd (Docker API)", imgEntrypoint: []string{"/entry.sh"}, imgCmd: []string{"serve"}, runEntrypoint: []string{}, want: []string{"serve"}},
		{name: "image entrypoint only", imgEntrypoint: []string{"/bin/true"}, want: []string{"/bin/true"}},
		{name: "nothing at all", wantErr: true},
		{name: "empty command", runCmd: []string{""}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			imgCmd := slices.Clone(tc.imgCmd)
			got, err := MergeArgs(tc.imgEntrypoint, tc.imgCmd, tc.runEntrypoint, tc.runCmd)
			if tc.wantErr {
				if err == nil || !errdefs.IsInvalidArgument(err) {
					t.Fatalf("got %q, %v; want an invalid-argument error", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("args = %q, want %q", got, tc.want)
			}
			if !slices.Equal(tc.imgCmd, imgCmd) {
				t.Fatalf("image cmd modified: %q", tc.imgCmd)
			}
			// The spec carries the same argv.
			s := generate(t, imagespec.ImageConfig{Entrypoint: tc.imgEntrypoint, Cmd: tc.imgCmd},
				RunOptions{Entrypoint: tc.runEntrypoint, Cmd: tc.runCmd})
			if !slices.Equal(s.Process.Args, tc.want) {
				t.Fatalf("spec args = %q, want %q", s.Process.Args, tc.want)
			}
		})
	}
}

func TestNoCommandError(t *testing.T) {
	_, err := Generate(context.Background(), imagespec.ImageConfig{}, RunOptions{}, newRootfs(t))
	if err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "no command specified") {
		t.Fatalf("err = %v, want invalid argument 'no command specified'", err)
	}
}

func TestEnv(t *testing.T) {
	lookup := func(k string) (string, bool) {
		switch k {
		case "FROM_CLIENT":
			return "client value", true
		case "EMPTY_ON_CLIENT":
			return "", true
		}
		return "", false
	}
	for _, tc := range []struct {
		name   string
		imgEnv []string
		runEnv []string
		tty    bool
		want   []string // exact, in order
	}{
		{
			name: "defaults",
			want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=box", "HOME=/root"},
		},
		{
			name: "tty adds TERM",
			tty:  true,
			want: []string{"PATH=" + DefaultPathEnv, "HOSTNAME=box", "TERM=xterm", "HOME=/root"},
		},
		{
			name:   "image PATH replaces default, run overrides image, in place",
			imgEnv: []string{"PATH=/opt/bin", "A=img", "B=img"},
			runEnv: []string{"B=run", "C=run"},
			want:   []string{"PATH=/opt/bin", "HOSTNAME=box", "A=img", "B=run", "C=run", "HOME=/root"},
		},
		{
			name:   "run overrides TERM and HOSTNAME and HOME",
			tty:    true,
			runEnv: []string{"TERM=vt100", "HOSTNAME=other", "HOME=/tmp"},
			want:   []string{"PATH=" + DefaultPathEnv, "HOSTNAME=other", "TERM=vt100", "HOME=/tmp"},
		},
		{
			name:   "image HOME kept",
			imgEnv: []string{"HOME=/srv"},
			want:   []string{"PATH=" + DefaultPathEnv, "HOSTNAME=box", "HOME=/srv"},
		},
		{
			name:   "last run value wins",
			runEnv: []string{"A=1", "A=2"},
			want:   []string{"PATH=" + DefaultPathEnv, "HOSTNAME=box", "A=2", "HOME=/root"},
		},
		{
			name:   "bare name looked up",
			imgEnv: []string{"FROM_CLIENT=image"},
			runEnv: []string{"FROM_CLIENT", "EMPTY_ON_CLIENT"},
			want:   []string{"PATH=" + DefaultPathEnv, "HOSTNAME=box", "FROM_CLIENT=client value", "EMPTY_ON_CLIENT=", "HOME=/root"},
		},
		{
			name:   "unknown bare name unsets",
			imgEnv: []string{"UNKNOWN=image", "KEEP=1"},
			runEnv: []string{"UNKNOWN", "PATH"},
			want:   []string{"HOSTNAME=box", "KEEP=1", "HOME=/root"},
		},
		{
			name:   "value with equals signs",
			runEnv: []string{"OPTS=a=b=c"},
			want:   []string{"PATH=" + DefaultPathEnv, "HOSTNAME=box", "OPTS=a=b=c", "HOME=/root"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}, Env: tc.imgEnv},
				RunOptions{Env: tc.runEnv, LookupEnv: lookup, Hostname: "box", Tty: tc.tty})
			if !slices.Equal(s.Process.Env, tc.want) {
				t.Fatalf("env =\n  %q\nwant\n  %q", s.Process.Env, tc.want)
			}
		})
	}
}

func TestEnvInvalid(t *testing.T) {
	_, err := Generate(context.Background(), imagespec.ImageConfig{Cmd: []string{"sh"}},
		RunOptions{Env: []string{"=x"}}, newRootfs(t))
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("err = %v, want invalid argument", err)
	}
}

func TestParseEnvFile(t *testing.T) {
	in := "\xEF\xBB\xBF# comment\n\nA=1\n  B=two words  \n\tC\n  # indented comment\nD=\nE=x=y\n"
	got, err := ParseEnvFile("test.env", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"A=1", "B=two words  ", "C", "D=", "E=x=y"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, bad := range []string{"BAD NAME=1\n", "=1\n", "A=\xff\n"} {
		if _, err := ParseEnvFile("bad.env", strings.NewReader(bad)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseEnvFile(%q) err = %v, want invalid argument", bad, err)
		}
	}
	// Env file entries go through Generate like -e entries.
	s := generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}}, RunOptions{
		Env:       got,
		LookupEnv: func(k string) (string, bool) { return "from-" + k, k == "C" },
	})
	if v, _ := envValue(s.Process.Env, "C"); v != "from-C" {
		t.Fatalf("C = %q in %q", v, s.Process.Env)
	}
}

func TestUser(t *testing.T) {
	for _, tc := range []struct {
		spec     string
		groupAdd []string
		imgUser  string
		want     specs.User
		home     string
	}{
		{spec: "", want: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}}, home: "/root"},
		{spec: "root", want: specs.User{UID: 0, GID: 0, AdditionalGids: []uint32{0, 10}}, home: "/root"},
		{spec: "alice", want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 29}}, home: "/home/alice"},
		{spec: "1000", want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 29}}, home: "/home/alice"},
		{spec: "alice:staff", want: specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{50}}, home: "/home/alice"},
		{spec: "1000:50", want: specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{50}}, home: "/home/alice"},
		{spec: "alice:4242", want: specs.User{UID: 1000, GID: 4242, AdditionalGids: []uint32{4242}}, home: "/home/alice"},
		{spec: "4242", want: specs.User{UID: 4242, GID: 0, AdditionalGids: []uint32{0}}, home: "/"},
		{spec: "4242:4343", want: specs.User{UID: 4242, GID: 4343, AdditionalGids: []uint32{4343}}, home: "/"},
		{spec: "nobody", want: specs.User{UID: 65534, GID: 65534, AdditionalGids: []uint32{65534}}, home: "/nonexistent"},
		{spec: "nohome", want: specs.User{UID: 1001, GID: 1001, AdditionalGids: []uint32{1001}}, home: "/"},
		{spec: "daemon", groupAdd: []string{"staff", "777"}, want: specs.User{UID: 1, GID: 1, AdditionalGids: []uint32{1, 50, 777}}, home: "/usr/sbin"},
		{imgUser: "alice", want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10, 29}}, home: "/home/alice"},
		{spec: "nobody", imgUser: "alice", want: specs.User{UID: 65534, GID: 65534, AdditionalGids: []uint32{65534}}, home: "/nonexistent"},
	} {
		t.Run(tc.spec+"/"+tc.imgUser, func(t *testing.T) {
			s := generate(t, imagespec.ImageConfig{Cmd: []string{"id"}, User: tc.imgUser},
				RunOptions{User: tc.spec, GroupAdd: tc.groupAdd})
			got := s.Process.User
			slices.Sort(got.AdditionalGids[1:]) // primary first, the rest in any order
			if got.UID != tc.want.UID || got.GID != tc.want.GID || !slices.Equal(got.AdditionalGids, tc.want.AdditionalGids) {
				t.Fatalf("user = %+v, want %+v", got, tc.want)
			}
			if home, _ := envValue(s.Process.Env, "HOME"); home != tc.home {
				t.Fatalf("HOME = %q, want %q", home, tc.home)
			}
		})
	}
}

func TestUserErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"mallory":      "unable to find user mallory: no matching entries in passwd file",
		"alice:nosuch": "unable to find group nosuch: no matching entries in group file",
		"-1":           "",
	} {
		_, err := Generate(context.Background(), imagespec.ImageConfig{Cmd: []string{"id"}}, RunOptions{User: spec}, newRootfs(t))
		if err == nil || !errdefs.IsInvalidArgument(err) {
			t.Fatalf("user %q: err = %v, want invalid argument", spec, err)
		}
		if want != "" && err.Error() != want {
			t.Fatalf("user %q: err = %q, want %q", spec, err, want)
		}
	}
	_, err := Generate(context.Background(), imagespec.ImageConfig{Cmd: []string{"id"}},
		RunOptions{User: "alice", GroupAdd: []string{"nosuch"}}, newRootfs(t))
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("group-add nosuch: err = %v", err)
	}
}

func TestUserWithoutPasswd(t *testing.T) {
	root := t.TempDir() // no etc/passwd, no etc/group (e.g. a scratch image)
	img := imagespec.ImageConfig{Cmd: []string{"/app"}}
	s, err := Generate(context.Background(), img, RunOptions{}, root)
	if err != nil {
		t.Fatal(err)
	}
	if u := s.Process.User; u.UID != 0 || u.GID != 0 {
		t.Fatalf("user = %+v, want root", u)
	}
	if home, _ := envValue(s.Process.Env, "HOME"); home != "/" {
		t.Fatalf("HOME = %q, want /", home)
	}
	s, err = Generate(context.Background(), img, RunOptions{User: "123:456"}, root)
	if err != nil {
		t.Fatal(err)
	}
	if u := s.Process.User; u.UID != 123 || u.GID != 456 {
		t.Fatalf("user = %+v, want 123:456", u)
	}
	_, err = Generate(context.Background(), img, RunOptions{User: "alice"}, root)
	if err == nil || err.Error() != "unable to find user alice: no matching entries in passwd file" {
		t.Fatalf("err = %v", err)
	}
}

// An image must not make berthd read host files through a symlink.
func TestUserFilesResolvedInsideRootfs(t *testing.T) {
	host := t.TempDir()
	writeFile(t, filepath.Join(host, "passwd"), "mallory:x:666:666::/evil:/bin/sh\n")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Absolute and relative escapes both stay inside root.
	if err := os.Symlink(filepath.Join(host, "passwd"), filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(filepath.Join(root, "etc"), filepath.Join(host, "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rel, filepath.Join(root, "etc", "group")); err != nil {
		t.Fatal(err)
	}
	_, err = Generate(context.Background(), imagespec.ImageConfig{Cmd: []string{"id"}}, RunOptions{User: "mallory"}, root)
	if err == nil {
		t.Fatal("user mallory resolved from a file outside the rootfs")
	}

	// An absolute symlink is resolved relative to the rootfs, as in the container.
	root2 := newRootfs(t)
	writeFile(t, filepath.Join(root2, "usr", "lib", "passwd"), "bob:x:2000:2000::/home/bob:/bin/sh\n")
	if err := os.Remove(filepath.Join(root2, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/lib/passwd", filepath.Join(root2, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}
	s, err := Generate(context.Background(), imagespec.ImageConfig{Cmd: []string{"id"}}, RunOptions{User: "bob"}, root2)
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.User.UID != 2000 {
		t.Fatalf("uid = %d, want 2000", s.Process.User.UID)
	}
}

func TestUserFileNotRegular(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc", "passwd"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Generate(context.Background(), imagespec.ImageConfig{Cmd: []string{"id"}}, RunOptions{User: "alice"}, root)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v, want 'not a regular file'", err)
	}
}

func TestWorkingDir(t *testing.T) {
	for _, tc := range []struct{ img, run, want string }{
		{"", "", "/"},
		{"/app", "", "/app"},
		{"/app", "/tmp", "/tmp"},
		{"", "/a/../b/", "/b"},
	} {
		s := generate(t, imagespec.ImageConfig{Cmd: []string{"pwd"}, WorkingDir: tc.img}, RunOptions{WorkingDir: tc.run})
		if s.Process.Cwd != tc.want {
			t.Errorf("img %q run %q: cwd = %q, want %q", tc.img, tc.run, s.Process.Cwd, tc.want)
		}
	}
	_, err := Generate(context.Background(), imagespec.ImageConfig{Cmd: []string{"pwd"}}, RunOptions{WorkingDir: "rel"}, newRootfs(t))
	if err == nil || err.Error() != "the working directory 'rel' is invalid, it needs to be an absolute path" {
		t.Fatalf("err = %v", err)
	}
}

func TestHostnameTtyLabels(t *testing.T) {
	s := generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}, Labels: map[string]string{"a": "img", "b": "img"}},
		RunOptions{Hostname: "4f2a9c1e0b7d", Tty: true, Labels: map[string]string{"b": "run", "c": "run"}})
	if s.Hostname != "4f2a9c1e0b7d" {
		t.Fatalf("hostname = %q", s.Hostname)
	}
	if v, _ := envValue(s.Process.Env, "HOSTNAME"); v != "4f2a9c1e0b7d" {
		t.Fatalf("HOSTNAME = %q", v)
	}
	if !s.Process.Terminal {
		t.Fatal("terminal not set with Tty")
	}
	want := map[string]string{"a": "img", "b": "run", "c": "run"}
	if len(s.Annotations) != len(want) {
		t.Fatalf("annotations = %v, want %v", s.Annotations, want)
	}
	for k, v := range want {
		if s.Annotations[k] != v {
			t.Fatalf("annotations = %v, want %v", s.Annotations, want)
		}
	}
	s = generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}}, RunOptions{})
	if s.Process.Terminal {
		t.Fatal("terminal set without Tty")
	}
	if _, ok := envValue(s.Process.Env, "TERM"); ok {
		t.Fatalf("TERM set without Tty: %q", s.Process.Env)
	}
	if s.Annotations != nil {
		t.Fatalf("annotations without labels: %v", s.Annotations)
	}
}

func mountAt(s *specs.Spec, dst string) (specs.Mount, int) {
	for i, m := range s.Mounts {
		if m.Destination == dst {
			return m, i
		}
	}
	return specs.Mount{}, -1
}

func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	return slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
}

func TestDefaults(t *testing.T) {
	s := generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}}, RunOptions{})
	if s.Version != specs.Version || s.Root == nil || s.Root.Path != "rootfs" || s.Root.Readonly {
		t.Fatalf("version/root = %q %+v", s.Version, s.Root)
	}
	for _, ns := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace, specs.NetworkNamespace} {
		if !hasNamespace(s, ns) {
			t.Errorf("namespace %s missing", ns)
		}
	}
	if hasNamespace(s, specs.UserNamespace) || hasNamespace(s, specs.CgroupNamespace) {
		t.Errorf("unexpected namespaces %+v", s.Linux.Namespaces)
	}
	for dst, typ := range map[string]string{
		"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs",
		"/dev/mqueue": "mqueue", "/sys": "sysfs", "/sys/fs/cgroup": "cgroup",
	} {
		m, i := mountAt(s, dst)
		if i < 0 || m.Type != typ {
			t.Errorf("mount %s: got %+v, want type %s", dst, m, typ)
		}
	}
	if m, _ := mountAt(s, "/dev/shm"); !slices.Contains(m.Options, "size=65536k") {
		t.Errorf("/dev/shm options %q lack size=65536k", m.Options)
	}
	for _, dst := range []string{"/sys", "/sys/fs/cgroup"} {
		if m, _ := mountAt(s, dst); !slices.Contains(m.Options, "ro") {
			t.Errorf("%s not read-only: %q", dst, m.Options)
		}
	}
	if _, i := mountAt(s, "/dev/pts"); i < 0 {
		t.Fatal("no /dev/pts")
	} else if _, j := mountAt(s, "/dev"); j > i {
		t.Error("/dev/pts mounted before /dev")
	}
	caps := s.Process.Capabilities
	wantCaps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	for name, set := range map[string][]string{"bounding": caps.Bounding, "permitted": caps.Permitted, "effective": caps.Effective} {
		got := slices.Sorted(slices.Values(set))
		if !slices.Equal(got, slices.Sorted(slices.Values(wantCaps))) {
			t.Errorf("%s caps = %q", name, set)
		}
	}
	if len(caps.Inheritable) != 0 || len(caps.Ambient) != 0 {
		t.Errorf("inheritable/ambient caps must be empty: %+v", caps)
	}
	if slices.Contains(caps.Bounding, "CAP_SYS_ADMIN") {
		t.Error("CAP_SYS_ADMIN in default caps")
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware", "/proc/acpi", "/proc/scsi"} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("masked paths lack %s", p)
		}
	}
	for _, p := range []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"} {
		if !slices.Contains(s.Linux.ReadonlyPaths, p) {
			t.Errorf("read-only paths lack %s", p)
		}
	}
	if s.Process.NoNewPrivileges {
		t.Error("no-new-privileges on by default")
	}
	if len(s.Process.Rlimits) != 1 || s.Process.Rlimits[0] != (specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}) {
		t.Errorf("rlimits = %+v", s.Process.Rlimits)
	}
	devs := s.Linux.Resources.Devices
	if len(devs) == 0 || devs[0].Allow || devs[0].Access != "rwm" || devs[0].Major != nil {
		t.Errorf("device rules must start with deny-all: %+v", devs)
	}
	// Each Generate gets its own copies: changing one spec must not leak.
	s.Linux.MaskedPaths[0] = "/changed"
	s.Process.Capabilities.Bounding[0] = "CAP_SYS_ADMIN"
	s.Mounts[0].Options[0] = "changed"
	s2 := generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}}, RunOptions{})
	if s2.Linux.MaskedPaths[0] == "/changed" || s2.Process.Capabilities.Bounding[0] == "CAP_SYS_ADMIN" || s2.Mounts[0].Options[0] == "changed" {
		t.Fatal("defaults are shared between specs")
	}
}

func TestNetworkModes(t *testing.T) {
	for mode, wantNetNS := range map[string]bool{"": true, "none": true, "host": false} {
		s := generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}}, RunOptions{NetworkMode: mode})
		if got := hasNamespace(s, specs.NetworkNamespace); got != wantNetNS {
			t.Errorf("mode %q: network namespace = %v, want %v", mode, got, wantNetNS)
		}
		for _, ns := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace} {
			if !hasNamespace(s, ns) {
				t.Errorf("mode %q: namespace %s missing", mode, ns)
			}
		}
	}
	_, err := Generate(context.Background(), imagespec.ImageConfig{Cmd: []string{"sh"}}, RunOptions{NetworkMode: "container:abc"}, newRootfs(t))
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("err = %v, want invalid argument", err)
	}
}

func TestNetworkFilesAndMounts(t *testing.T) {
	opts := RunOptions{
		HostsPath:      "/run/berth/c/hosts",
		HostnamePath:   "/run/berth/c/hostname",
		ResolvConfPath: "/run/berth/c/resolv.conf",
		Mounts: []Mount{
			{Type: MountTypeBind, Source: "/srv/data/sub", Destination: "/data/sub/", ReadOnly: true},
			{Type: MountTypeBind, Source: "/srv/data", Destination: "/data", Propagation: "rslave"},
			{Type: MountTypeTmpfs, Destination: "/run", Options: []string{"size=1m", "exec"}},
			{Type: MountTypeBind, Source: "/my/hosts", Destination: "/etc/hosts"},
		},
	}
	s := generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}}, opts)
	check := func(dst, typ, src string, options ...string) int {
		t.Helper()
		m, i := mountAt(s, dst)
		if i < 0 {
			t.Fatalf("no mount on %s in %+v", dst, s.Mounts)
		}
		if m.Type != typ || m.Source != src || !slices.Equal(m.Options, options) {
			t.Fatalf("mount %s = %+v, want %s %s %q", dst, m, typ, src, options)
		}
		return i
	}
	check("/etc/resolv.conf", "bind", "/run/berth/c/resolv.conf", "rbind", "rprivate")
	check("/etc/hostname", "bind", "/run/berth/c/hostname", "rbind", "rprivate")
	check("/etc/hosts", "bind", "/my/hosts", "rbind", "rprivate") // the user's mount wins
	parent := check("/data", "bind", "/srv/data", "rbind", "rslave")
	child := check("/data/sub", "bind", "/srv/data/sub", "rbind", "rprivate", "ro")
	if parent > child {
		t.Error("/data/sub mounted before /data")
	}
	check("/run", "tmpfs", "tmpfs", "nosuid", "nodev", "noexec", "size=1m", "exec")
	n := 0
	for _, m := range s.Mounts {
		if m.Destination == "/etc/hosts" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d mounts on /etc/hosts", n)
	}

	// Read-only root makes the network files read-only too.
	opts.ReadOnlyRoot = true
	s = generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}}, opts)
	if !s.Root.Readonly {
		t.Fatal("root not read-only")
	}
	check("/etc/resolv.conf", "bind", "/run/berth/c/resolv.conf", "rbind", "rprivate", "ro")
	check("/etc/hosts", "bind", "/my/hosts", "rbind", "rprivate")
	check("/run", "tmpfs", "tmpfs", "nosuid", "nodev", "noexec", "size=1m", "exec")
}

func TestMountReplacesDefaults(t *testing.T) {
	s := generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}}, RunOptions{Mounts: []Mount{
		{Type: MountTypeTmpfs, Destination: "/dev/shm", Options: []string{"size=1g"}},
	}})
	m, _ := mountAt(s, "/dev/shm")
	if m.Source != "tmpfs" || !slices.Contains(m.Options, "size=1g") || slices.Contains(m.Options, "size=65536k") {
		t.Fatalf("/dev/shm = %+v", m)
	}
	s = generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}}, RunOptions{Mounts: []Mount{
		{Type: MountTypeBind, Source: "/dev", Destination: "/dev"},
	}})
	for _, m := range s.Mounts {
		if strings.HasPrefix(m.Destination, "/dev/") {
			t.Fatalf("default mount %s kept under a user /dev mount", m.Destination)
		}
	}
}

func TestMountErrors(t *testing.T) {
	for name, m := range map[string][]Mount{
		"relative destination": {{Type: MountTypeBind, Source: "/a", Destination: "b"}},
		"root destination":     {{Type: MountTypeBind, Source: "/a", Destination: "/"}},
		"relative source":      {{Type: MountTypeBind, Source: "a", Destination: "/b"}},
		"bad propagation":      {{Type: MountTypeBind, Source: "/a", Destination: "/b", Propagation: "weird"}},
		"tmpfs propagation":    {{Type: MountTypeTmpfs, Destination: "/b", Propagation: "shared"}},
		"unknown type":         {{Type: "nfs", Source: "/a", Destination: "/b"}},
		"duplicate":            {{Type: MountTypeTmpfs, Destination: "/b"}, {Type: MountTypeBind, Source: "/a", Destination: "/b/"}},
	} {
		_, err := Generate(context.Background(), imagespec.ImageConfig{Cmd: []string{"sh"}}, RunOptions{Mounts: m}, newRootfs(t))
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: err = %v, want invalid argument", name, err)
		}
	}
}

func TestExtraSpecOpts(t *testing.T) {
	s := generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}}, RunOptions{},
		WithRootPath("/run/berth/tasks/default/c1/rootfs"),
		WithCgroupNamespace,
		WithCgroupsPath("/berth/default/c1"),
		WithNoNewPrivileges,
		WithRlimit("RLIMIT_NOFILE", 4096, 8192),
		WithRlimit("RLIMIT_NPROC", 100, 100),
		WithCapabilities([]string{"CAP_KILL"}),
		WithNamespace(specs.NetworkNamespace, "/proc/1/ns/net"),
		WithoutNamespace(specs.IPCNamespace),
	)
	if s.Root.Path != "/run/berth/tasks/default/c1/rootfs" || !hasNamespace(s, specs.CgroupNamespace) ||
		s.Linux.CgroupsPath != "/berth/default/c1" || !s.Process.NoNewPrivileges {
		t.Fatalf("spec opts not applied: root %+v cgroups %q nnp %v", s.Root, s.Linux.CgroupsPath, s.Process.NoNewPrivileges)
	}
	if hasNamespace(s, specs.IPCNamespace) {
		t.Fatal("ipc namespace kept")
	}
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace && n.Path != "/proc/1/ns/net" {
			t.Fatalf("network namespace path = %q", n.Path)
		}
	}
	want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 8192, Soft: 4096}, {Type: "RLIMIT_NPROC", Hard: 100, Soft: 100}}
	if !slices.Equal(s.Process.Rlimits, want) {
		t.Fatalf("rlimits = %+v", s.Process.Rlimits)
	}
	if !slices.Equal(s.Process.Capabilities.Effective, []string{"CAP_KILL"}) {
		t.Fatalf("caps = %+v", s.Process.Capabilities)
	}
	_, err := Generate(context.Background(), imagespec.ImageConfig{Cmd: []string{"sh"}}, RunOptions{}, newRootfs(t),
		WithRlimit("RLIMIT_NOFILE", 10, 1))
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("soft > hard: err = %v", err)
	}
}

func TestCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Generate(ctx, imagespec.ImageConfig{Cmd: []string{"sh"}}, RunOptions{}, newRootfs(t)); err == nil {
		t.Fatal("no error with a canceled context")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	s := generate(t, imagespec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"A=1"}}, RunOptions{Tty: true, User: "alice"})
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back specs.Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	b2, err := json.Marshal(&back)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(b2) {
		t.Fatalf("spec does not survive a JSON round trip:\n%s\n%s", b, b2)
	}
	for _, key := range []string{`"ociVersion"`, `"process"`, `"root"`, `"mounts"`, `"linux"`, `"maskedPaths"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

// The fallback used without openat2 must not escape the rootfs either.
func TestOpenWithRootFallback(t *testing.T) {
	host := t.TempDir()
	writeFile(t, filepath.Join(host, "secret"), "host file\n")
	root := newRootfs(t)
	if err := os.Symlink(filepath.Join(host, "secret"), filepath.Join(root, "etc", "abs")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../../../"+host+"/secret", filepath.Join(root, "etc", "rel")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"etc/abs", "etc/rel", "../" + filepath.Base(host) + "/secret"} {
		if f, err := openWithRoot(root, name); err == nil {
			f.Close()
			t.Errorf("openWithRoot(%q) opened a file outside the rootfs", name)
		}
	}
	f, err := openWithRoot(root, "etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}
