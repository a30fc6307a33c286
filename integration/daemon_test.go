package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// env is what every integration test shares: the built binaries and the
// test images, made once per run.
var env struct {
	bin     string // folder with berthd, berth, mkimage
	grpcurl string
	images  string // folder with the test images
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("integration tests need root: skipped")
		os.Exit(0)
	}
	env.bin = os.Getenv("BERTH_BIN")
	if env.bin == "" {
		fmt.Println("BERTH_BIN is not set (run 'make integration'): skipped")
		os.Exit(0)
	}
	env.grpcurl = os.Getenv("GRPCURL")
	dir, err := os.MkdirTemp("", "berth-it-images-")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	env.images = dir
	parents := absentCgroupParents()
	code := 1
	if err := makeImages(dir); err != nil {
		fmt.Println("making test images:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	// runc made berth's parent cgroups for the tests' containers; remove
	// those that were not there before (each test checks its children).
	for _, p := range parents {
		os.Remove(p)
	}
	os.Exit(code)
}

// absentCgroupParents returns the folders berth's parent cgroup would have
// in each hierarchy (/sys/fs/cgroup/*/berth, or /sys/fs/cgroup/berth on a
// unified host) that do not exist yet.
func absentCgroupParents() []string {
	candidates := []string{"/sys/fs/cgroup/berth"}
	hierarchies, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hierarchies {
		if h.IsDir() {
			candidates = append(candidates, filepath.Join("/sys/fs/cgroup", h.Name(), "berth"))
		}
	}
	var absent []string
	for _, c := range candidates {
		if _, err := os.Stat(c); os.IsNotExist(err) {
			absent = append(absent, c)
		}
	}
	return absent
}

// makeImages builds the test images with tools/mkimage.
func makeImages(dir string) error {
	for _, args := range [][]string{
		{"busybox", "-format", "docker", "-name", "busybox:latest", "-o", filepath.Join(dir, "busybox-docker.tar")},
		{"busybox", "-format", "oci", "-name", "busybox:oci", "-o", filepath.Join(dir, "busybox-oci.tar")},
		{"layers", "-format", "docker", "-name", "layers:latest", "-o", filepath.Join(dir, "layers-docker.tar")},
		{"layers", "-format", "oci", "-name", "layers:oci", "-o", filepath.Join(dir, "layers-oci.tar")},
	} {
		out, err := exec.Command(filepath.Join(env.bin, "mkimage"), args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("mkimage %v: %v: %s", args, err, out)
		}
	}
	return nil
}

func testImage(name string) string { return filepath.Join(env.images, name) }

// daemon is one berthd started by a test on its own root and state.
type daemon struct {
	t       *testing.T
	root    string
	state   string
	address string
	cmd     *exec.Cmd
	log     *lockedWriter
	done    chan error
}

// startDaemon starts berthd on fresh folders and stops it, and removes the
// folders, when the test ends.
func startDaemon(t *testing.T, extraArgs ...string) *daemon {
	t.Helper()
	base, err := os.MkdirTemp("", "berth-it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// Runs after berthd stopped (cleanups run last first), before the
	// folders go: a mount left there would make RemoveAll reach through it.
	t.Cleanup(func() { checkNoMounts(t, base) })
	d := &daemon{
		t:     t,
		root:  filepath.Join(base, "root"),
		state: filepath.Join(base, "state"),
	}
	d.address = filepath.Join(d.state, "berthd.sock")
	d.start(extraArgs...)
	t.Cleanup(d.stop)
	return d
}

func (d *daemon) start(extraArgs ...string) {
	d.t.Helper()
	args := append([]string{"--root", d.root, "--state", d.state, "--address", d.address, "--log-level", "debug",
		"--config", ""}, extraArgs...)
	d.cmd = exec.Command(filepath.Join(env.bin, "berthd"), args...)
	d.log = &lockedWriter{}
	d.cmd.Stdout = d.log
	d.cmd.Stderr = d.cmd.Stdout
	if err := d.cmd.Start(); err != nil {
		d.t.Fatalf("starting berthd: %v", err)
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, _, code := d.berth("version"); code == 0 {
			return
		}
		select {
		case err := <-d.done:
			d.t.Fatalf("berthd exited at start: %v\n%s", err, d.log)
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("berthd did not answer within 10s\n%s", d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("berthd exited with %v after SIGTERM\n%s", err, d.log)
		}
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("berthd did not stop within 15s of SIGTERM\n%s", d.log)
	}
	d.cmd = nil
}

// berth runs the CLI against this daemon and returns stdout, stderr and the exit code.
func (d *daemon) berth(args ...string) (stdout, stderr string, code int) {
	return d.berthIn(nil, args...)
}

func (d *daemon) berthIn(stdin []byte, args ...string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(env.bin, "berth"), append([]string{"--address", d.address}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		d.t.Fatalf("running berth %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// must runs the CLI and fails the test unless it succeeds.
func (d *daemon) must(args ...string) string {
	d.t.Helper()
	out, errOut, code := d.berth(args...)
	if code != 0 {
		d.t.Fatalf("berth %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// blobs lists the files in the content store's blob folder.
func (d *daemon) blobs() []string {
	return listFiles(d.t, filepath.Join(d.root, "content", "blobs", "sha256"))
}

// ingests lists the content store's partial writes.
func (d *daemon) ingests() []string {
	return listFiles(d.t, filepath.Join(d.root, "content", "ingest"))
}

func listFiles(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// lockedWriter collects a daemon's log while the test reads it.
type lockedWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
