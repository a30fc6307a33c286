package ocispec

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
)

const runcPath = "/usr/sbin/runc"

// runcAvailable skips the test unless it can run containers with runc.
func runcAvailable(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a container with runc")
	}
	if _, err := os.Stat(runcPath); err != nil {
		t.Skipf("runc not installed at %s", runcPath)
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed")
	}
	return busybox
}

// newBundle makes a bundle directory whose rootfs holds a static busybox
// (as /bin/busybox and /bin/sh), the test passwd and group files and /work.
func newBundle(t *testing.T, busybox string) (bundle, rootfs string) {
	t.Helper()
	bundle = t.TempDir()
	rootfs = filepath.Join(bundle, "rootfs")
	writeFile(t, filepath.Join(rootfs, "etc", "passwd"), testPasswd)
	writeFile(t, filepath.Join(rootfs, "etc", "group"), testGroup)
	bin, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", "sh")); err != nil {
		t.Fatal(err)
	}
	// The working directory exists: creating it is the caller's job.
	if err := os.MkdirAll(filepath.Join(rootfs, "work"), 0o777); err != nil {
		t.Fatal(err)
	}
	return bundle, rootfs
}

// runSpec writes the spec Generate makes into bundle and runs it with
// `runc run`, returning its stdout. The container is removed even on failure.
func runSpec(t *testing.T, bundle, rootfs string, img imagespec.ImageConfig, opts RunOptions) string {
	t.Helper()
	id := fmt.Sprintf("ocispec-test-%d", time.Now().UnixNano())
	s, err := Generate(context.Background(), img, opts, rootfs, WithCgroupsPath("/"+id))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	defer func() {
		// runc run removes the container when it exits; this catches the
		// cases where it did not (a failed start, a timeout).
		_ = exec.Command(runcPath, "--root", state, "delete", "--force", id).Run()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, runcPath, "--root", state, "run", "--bundle", bundle, id)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("runc run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if _, err := os.Stat(filepath.Join(state, id)); !os.IsNotExist(err) {
		t.Errorf("runc state %s left behind (%v)", id, err)
	}
	return stdout.String()
}

// TestRuncRunsGeneratedSpec checks that runc accepts a generated spec and that
// the container sees what the spec says: argv, user and groups, environment,
// working directory, hostname, masked and read-only paths.
func TestRuncRunsGeneratedSpec(t *testing.T) {
	bundle, rootfs := newBundle(t, runcAvailable(t))
	hostname := filepath.Join(bundle, "hostname")
	writeFile(t, hostname, "ocispec-test\n")

	// Check masking on a masked /proc file this kernel has (the list
	// holds files that only some kernels provide).
	masked := ""
	for _, p := range DefaultMaskedPaths() {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && strings.HasPrefix(p, "/proc/") {
			masked = p
			break
		}
	}
	if masked == "" {
		t.Fatal("none of the masked /proc files exists on this host")
	}
	script := `id -u; id -g; id -G; pwd; hostname; cat /etc/hostname; env | sort; ` +
		`grep CapEff /proc/self/status; touch /sys/x 2>/dev/null && echo sys-writable || echo sys-ro; ` +
		`test -c /dev/null && echo devnull; test -c ` + masked + ` && echo proc-masked`
	img := imagespec.ImageConfig{
		Entrypoint: []string{"/bin/busybox", "sh", "-c"},
		Cmd:        []string{"echo image cmd"},
		Env:        []string{"FROM_IMAGE=1", "PATH=/bin"},
	}
	out := runSpec(t, bundle, rootfs, img, RunOptions{
		Cmd:          []string{script},
		Env:          []string{"FROM_RUN=2"},
		User:         "alice",
		WorkingDir:   "/work",
		Hostname:     "ocispec-test",
		HostnamePath: hostname,
		NetworkMode:  NetworkNone,
	})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 6 {
		t.Fatalf("short output:\n%s", out)
	}
	groups := strings.Fields(lines[2])
	if lines[0] != "1000" || lines[1] != "1000" || strings.Join(groups, " ") != "1000 10 29" {
		t.Errorf("uid/gid/groups = %q %q %q, want 1000 1000 [1000 10 29]", lines[0], lines[1], lines[2])
	}
	if lines[3] != "/work" || lines[4] != "ocispec-test" || lines[5] != "ocispec-test" {
		t.Errorf("pwd/hostname/etc-hostname = %q %q %q", lines[3], lines[4], lines[5])
	}
	for _, want := range []string{
		"FROM_IMAGE=1", "FROM_RUN=2", "PATH=/bin", "HOSTNAME=ocispec-test", "HOME=/home/alice",
		"sys-ro", "devnull", "proc-masked",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A non-root user has no effective capabilities (as with Docker).
	if !strings.Contains(out, "CapEff:\t0000000000000000\n") {
		t.Errorf("effective caps of a non-root user not empty:\n%s", out)
	}
}

// TestRuncRootHostNetworkReadOnly runs as root with --network host and
// --read-only: Docker's capability set, the host's network namespace, and a
// root filesystem that cannot be written.
func TestRuncRootHostNetworkReadOnly(t *testing.T) {
	bundle, rootfs := newBundle(t, runcAvailable(t))
	hostNet, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	out := runSpec(t, bundle, rootfs, imagespec.ImageConfig{Cmd: []string{"/bin/busybox", "sh", "-c",
		`grep CapEff /proc/self/status; readlink /proc/self/ns/net; ` +
			`touch /x 2>/dev/null && echo root-writable || echo root-ro; ` +
			`touch /dev/shm/x && echo shm-writable`}},
		RunOptions{NetworkMode: NetworkHost, ReadOnlyRoot: true, Hostname: "h"})
	// Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID
	// SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
	for _, want := range []string{"CapEff:\t00000000a80425fb", hostNet, "root-ro", "shm-writable"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestRuncSecurityAndLimits runs specs with Docker's seccomp profile, a
// dropped capability set, no_new_privs and ulimits, and checks that runc
// applies them.
func TestRuncSecurityAndLimits(t *testing.T) {
	bundle, rootfs := newBundle(t, runcAvailable(t))
	script := `grep -E '^(Seccomp|CapEff|NoNewPrivs):' /proc/self/status; ulimit -n; ulimit -Hn; ` +
		`grep ' /dev/shm ' /proc/mounts | grep -o 'size=[0-9]*k'; ` +
		`/bin/busybox unshare -U true 2>/dev/null && echo unshared; true`
	img := imagespec.ImageConfig{Cmd: []string{"/bin/busybox", "sh", "-c", script}}
	out := runSpec(t, bundle, rootfs, img, RunOptions{
		Hostname: "h",
		Security: Security{CapDrop: []string{"ALL"}, CapAdd: []string{"KILL"}, NoNewPrivileges: true},
		Resources: Resources{
			ShmSize: 8 << 20,
			Ulimits: []Ulimit{{Name: "nofile", Soft: 512, Hard: 768}},
		},
	})
	// CAP_KILL is bit 5.
	want := "Seccomp:\t2\nCapEff:\t0000000000000020\nNoNewPrivs:\t1\n512\n768\nsize=8192k\n"
	if !sameSet(out, want) {
		t.Errorf("confined container printed:\n%s\nwant:\n%s", out, want)
	}
	out = runSpec(t, bundle, rootfs, img, RunOptions{Hostname: "h", Security: Security{SeccompUnconfined: true}})
	if !strings.Contains(out, "Seccomp:\t0\n") || !strings.Contains(out, "unshared\n") {
		t.Errorf("unconfined container printed:\n%s", out)
	}
}

// sameSet compares outputs as sets of lines (grep prints /proc/self/status
// lines in the file's order).
func sameSet(got, want string) bool {
	g := strings.Split(strings.TrimSpace(got), "\n")
	w := strings.Split(strings.TrimSpace(want), "\n")
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(g, w)
}
