package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	imagespec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/services/tasks/ocispec"
)

// errSkip marks a benchmark that cannot run on this machine; main reports
// it without failing the run.
type errSkip struct{ reason string }

func (e errSkip) Error() string { return "skipped: " + e.reason }

// needContainers returns an errSkip unless containers can run here: as
// root, with runc installed (the reference, and berth-shim's runtime).
func needContainers() error {
	if os.Geteuid() != 0 {
		return errSkip{"running containers needs root: run bench as root"}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return errSkip{"runc is not installed: install it (make deps) to compare against it"}
	}
	return nil
}

// loadBusybox loads mkimage's busybox image into namespace "bench" (it is
// unpacked on load) and returns the docker-format archive it came from, for
// the runc bundle. The caller removes the archive.
func (h *harness) loadBusybox(ctx context.Context) (string, error) {
	if err := h.waitSnapshotter(ctx); err != nil {
		return "", err
	}
	archive := filepath.Join(h.dir, "busybox.tar")
	if out, err := exec.Command(filepath.Join(h.bin, "mkimage"), "busybox", "-format", "docker",
		"-o", archive).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mkimage busybox: %v: %s", err, out)
	}
	if err := h.berth("load", "-q", "-i", archive); err != nil {
		os.Remove(archive)
		return "", err
	}
	return archive, nil
}

// runcBundle makes an OCI bundle under dir from a docker-format archive of
// a one-layer image: its layer extracted as rootfs, and the spec berth
// itself would generate for the image with the given args (Docker's
// capabilities, seccomp profile, masked paths, the network files and a
// cgroup under /berth), so that runc does the same work as under berth.
func runcBundle(ctx context.Context, archive, dir string, args ...string) error {
	unpacked := filepath.Join(dir, "archive")
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{unpacked, rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	defer os.RemoveAll(unpacked)
	if out, err := exec.Command("tar", "-xf", archive, "-C", unpacked).CombinedOutput(); err != nil {
		return fmt.Errorf("extracting %s: %v: %s", archive, err, out)
	}
	data, err := os.ReadFile(filepath.Join(unpacked, "manifest.json"))
	if err != nil {
		return err
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(data, &manifest); err != nil {
		return fmt.Errorf("reading manifest.json of %s: %w", archive, err)
	}
	if len(manifest) != 1 || len(manifest[0].Layers) != 1 {
		return fmt.Errorf("%s: want one image of one layer, got %d images", archive, len(manifest))
	}
	layer := filepath.Join(unpacked, manifest[0].Layers[0])
	if out, err := exec.Command("tar", "-xpf", layer, "-C", rootfs).CombinedOutput(); err != nil {
		return fmt.Errorf("extracting layer %s: %v: %s", layer, err, out)
	}
	var img imagespec.Image
	if data, err = os.ReadFile(filepath.Join(unpacked, manifest[0].Config)); err != nil {
		return err
	}
	if err := json.Unmarshal(data, &img); err != nil {
		return fmt.Errorf("reading the image config in %s: %w", archive, err)
	}
	opts := ocispec.RunOptions{
		Cmd:            args,
		Hostname:       "bench",
		NetworkMode:    ocispec.NetworkNone,
		HostsPath:      filepath.Join(dir, "hosts"),
		HostnamePath:   filepath.Join(dir, "hostname"),
		ResolvConfPath: filepath.Join(dir, "resolv.conf"),
		CgroupsPath:    ocispec.CgroupsPath(filepath.Base(dir)),
	}
	for _, f := range []string{opts.HostsPath, opts.HostnamePath, opts.ResolvConfPath} {
		if err := os.WriteFile(f, []byte("\n"), 0o644); err != nil {
			return err
		}
	}
	spec, err := ocispec.Generate(ctx, img.Config, opts, rootfs)
	if err != nil {
		return fmt.Errorf("generating the reference spec: %w", err)
	}
	if spec.Linux.Seccomp == nil {
		return errors.New("the reference spec has no seccomp profile")
	}
	if data, err = json.Marshal(spec); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
}

// runc runs runc with its state under root and returns its output on error.
func runc(root string, args ...string) error {
	out, err := exec.Command("runc", append([]string{"--root", root}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("runc %v: %v: %s", args, err, out)
	}
	return nil
}

// runcRoot makes a runc state folder and returns it with a cleanup that
// deletes every container left in it.
func (h *harness) runcRoot(name string) (string, func(), error) {
	root := filepath.Join(h.dir, name)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", nil, err
	}
	return root, func() {
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			if e.IsDir() {
				_ = runc(root, "delete", "-f", e.Name())
			}
		}
		os.RemoveAll(root)
	}, nil
}

// benchRunRmTrue compares 'berth run --rm busybox true' with a foreground
// 'runc run' (then 'runc delete') of a bundle of the same image.
func benchRunRmTrue(ctx context.Context, h *harness) (result, error) {
	if err := needContainers(); err != nil {
		return result{}, err
	}
	archive, err := h.loadBusybox(ctx)
	if err != nil {
		return result{}, err
	}
	defer os.Remove(archive)
	bundle := filepath.Join(h.dir, "bundle-run")
	defer os.RemoveAll(bundle)
	if err := runcBundle(ctx, archive, bundle, "true"); err != nil {
		return result{}, err
	}
	root, cleanup, err := h.runcRoot("runc-run")
	if err != nil {
		return result{}, err
	}
	defer cleanup()

	n := 0
	ref, err := median(h.runs, func() (time.Duration, error) {
		n++
		id := fmt.Sprintf("bench-run-%d", n)
		start := time.Now()
		// A foreground 'runc run' deletes the container when it exits.
		if err := runc(root, "run", "--bundle", bundle, id); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	})
	if err != nil {
		return result{}, err
	}
	berth, err := median(h.runs, func() (time.Duration, error) {
		start := time.Now()
		if err := h.berth("run", "--rm", "busybox", "true"); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	})
	if err != nil {
		return result{}, err
	}
	ratio := float64(berth) / float64(ref)
	return result{berth: berth, reference: ref, refName: "runc run, same spec", ratio: ratio,
		target: "<= 1.50x", ok: ratio <= 1.5, note: "(time)"}, nil
}

// benchExecTrue compares 'berth exec C true' into a running busybox
// container with 'runc exec ID true' into a runc container of the same
// bundle.
func benchExecTrue(ctx context.Context, h *harness) (result, error) {
	if err := needContainers(); err != nil {
		return result{}, err
	}
	archive, err := h.loadBusybox(ctx)
	if err != nil {
		return result{}, err
	}
	defer os.Remove(archive)
	bundle := filepath.Join(h.dir, "bundle-exec")
	defer os.RemoveAll(bundle)
	if err := runcBundle(ctx, archive, bundle, "sleep", "3600"); err != nil {
		return result{}, err
	}
	root, cleanup, err := h.runcRoot("runc-exec")
	if err != nil {
		return result{}, err
	}
	defer cleanup()
	const id = "bench-exec"
	// Stdio stays on /dev/null: a pipe would be inherited by the detached
	// container and never reach EOF.
	if err := exec.Command("runc", "--root", root, "run", "-d", "--bundle", bundle, id).Run(); err != nil {
		return result{}, fmt.Errorf("runc run -d %s: %w", id, err)
	}
	ref, err := median(h.runs, func() (time.Duration, error) {
		start := time.Now()
		if err := runc(root, "exec", id, "true"); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	})
	if err != nil {
		return result{}, err
	}

	const name = "bench-exec"
	if err := h.berth("run", "-d", "--name", name, "busybox", "sleep", "3600"); err != nil {
		return result{}, err
	}
	defer h.berth("rm", "-f", name)
	berth, err := median(h.runs, func() (time.Duration, error) {
		start := time.Now()
		if err := h.berth("exec", name, "true"); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	})
	if err != nil {
		return result{}, err
	}
	ratio := float64(berth) / float64(ref)
	return result{berth: berth, reference: ref, refName: "runc exec", ratio: ratio,
		target: "<= 1.50x", ok: ratio <= 1.5, note: "(time)"}, nil
}

// busyboxLoaded checks that containers can run here and loads mkimage's
// busybox as busybox:latest.
func (h *harness) busyboxLoaded(ctx context.Context) error {
	if err := needContainers(); err != nil {
		return err
	}
	archive, err := h.loadBusybox(ctx)
	if err != nil {
		return err
	}
	return os.Remove(archive)
}

// runSleepers runs count `busybox sleep 3600` containers named prefix-N,
// one after the other, and returns the names of those it started.
func (h *harness) runSleepers(prefix string, count int) ([]string, error) {
	var names []string
	for i := range count {
		name := fmt.Sprintf("%s-%d", prefix, i)
		if err := h.berth("run", "-d", "--name", name, "busybox", "sleep", "3600"); err != nil {
			return names, err
		}
		names = append(names, name)
	}
	return names, nil
}

// remove force-removes the named containers.
func (h *harness) remove(names []string) {
	if len(names) > 0 {
		_ = h.berth(append([]string{"rm", "-f"}, names...)...)
	}
}

// benchFiftyContainers starts 50 'sleep 3600' containers one after the
// other, then measures the memory of their shims and of berthd.
func benchFiftyContainers(ctx context.Context, h *harness) (result, error) {
	if err := h.busyboxLoaded(ctx); err != nil {
		return result{}, err
	}

	start := time.Now()
	const count = 50
	names, err := h.runSleepers("bench-fifty", count)
	defer h.remove(names)
	if err != nil {
		return result{}, err
	}
	total := time.Since(start)

	pidFiles, err := filepath.Glob(filepath.Join(h.dir, "state", "tasks", "bench", "*", "shim.pid"))
	if err != nil {
		return result{}, err
	}
	if len(pidFiles) != count {
		return result{}, fmt.Errorf("found %d shim.pid files under %s, want %d", len(pidFiles),
			filepath.Join(h.dir, "state", "tasks", "bench"), count)
	}
	var rss, pss []int64
	for _, f := range pidFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			return result{}, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			return result{}, fmt.Errorf("%s: %w", f, err)
		}
		r, err := procKiB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
		if err != nil {
			return result{}, err
		}
		p, err := procKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
		if err != nil {
			return result{}, err
		}
		rss, pss = append(rss, r), append(pss, p)
	}
	daemonRSS, err := procKiB(fmt.Sprintf("/proc/%d/status", h.daemon.Process.Pid), "VmRSS:")
	if err != nil {
		return result{}, err
	}
	shimRSS, shimPSS := medianInt(rss), medianInt(pss)
	const targetKiB = 5 * 1024
	return result{berth: total, refName: "(none)", ratio: float64(shimRSS) / targetKiB,
		target: "shim RSS<=5MiB", ok: shimRSS <= targetKiB,
		note: fmt.Sprintf("(total for %d; median shim RSS %s, PSS %s; berthd RSS %s)",
			count, kib(shimRSS), kib(shimPSS), kib(daemonRSS))}, nil
}

// procKiB returns the kB figure on the line starting with key in a /proc
// file such as status or smaps_rollup.
func procKiB(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, key) {
			continue
		}
		fields := strings.Fields(strings.TrimPrefix(line, key))
		if len(fields) == 0 {
			break
		}
		return strconv.ParseInt(fields[0], 10, 64)
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no %q line", path, key)
}

func medianInt(v []int64) int64 {
	slices.Sort(v)
	return v[len(v)/2]
}

func kib(v int64) string { return fmt.Sprintf("%.1fMiB", float64(v)/1024) }

// isSkip reports whether err says the benchmark cannot run here.
func isSkip(err error) bool {
	var s errSkip
	return errors.As(err, &s)
}
