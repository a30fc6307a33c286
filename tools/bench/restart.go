package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// benchRestartFifty kills berthd (SIGKILL) with fifty containers running
// and times its start until `berth ps` lists all fifty; the reference is a
// berthd started on empty folders until `berth ps` answers.
func benchRestartFifty(ctx context.Context, h *harness) (result, error) {
	if err := h.busyboxLoaded(ctx); err != nil {
		return result{}, err
	}

	const count = 50
	names, err := h.runSleepers("bench-restart", count)
	defer h.remove(names)
	if err != nil {
		return result{}, err
	}
	var restarts []time.Duration
	for range h.runs {
		_ = h.daemon.Process.Signal(syscall.SIGKILL)
		_ = h.daemon.Wait()
		start := time.Now()
		cmd, err := startBerthd(h.bin, h.dir)
		if err != nil {
			return result{}, err
		}
		h.daemon = cmd
		if err := waitPsLists(h.bin, h.address, count); err != nil {
			return result{}, err
		}
		restarts = append(restarts, time.Since(start))
	}
	var fresh []time.Duration
	for range h.runs {
		d, err := freshStart(h.bin)
		if err != nil {
			return result{}, err
		}
		fresh = append(fresh, d)
	}
	restart, ref := medianOf(restarts), medianOf(fresh)
	return result{berth: restart, reference: ref, refName: "empty berthd start",
		ratio: restart.Seconds(), target: "restart<1s", ok: restart < time.Second,
		note: fmt.Sprintf("(until ps lists %d running containers after kill -9)", count)}, nil
}

// startBerthd starts berthd on <dir>/root and <dir>/state, as the harness
// does.
func startBerthd(bin, dir string) (*exec.Cmd, error) {
	cmd := exec.Command(filepath.Join(bin, "berthd"), "--root", filepath.Join(dir, "root"),
		"--state", filepath.Join(dir, "state"), "--address", filepath.Join(dir, "berthd.sock"), "--config", "")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting berthd: %w", err)
	}
	return cmd, nil
}

// waitPsLists runs `berth ps -q` until it lists want containers, for up
// to a minute.
func waitPsLists(bin, address string, want int) error {
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := exec.Command(filepath.Join(bin, "berth"), "--address", address, "--namespace", "bench", "ps", "-q").Output()
		if err == nil && len(strings.Fields(string(out))) == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("berth ps did not list %d containers within a minute: %v: %s", want, err, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// freshStart times a berthd on empty folders until `berth ps` answers.
func freshStart(bin string) (time.Duration, error) {
	dir, err := os.MkdirTemp("", "berth-bench-fresh-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	cmd, err := startBerthd(bin, dir)
	if err != nil {
		return 0, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	if err := waitPsLists(bin, filepath.Join(dir, "berthd.sock"), 0); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
