package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// benchStatsFifty times `berth stats --no-stream` over 50 running
// containers against the 200 ms target; `berth ps` over the same 50 is
// shown beside it as the cost of a CLI call that lists them.
func benchStatsFifty(ctx context.Context, h *harness) (result, error) {
	if err := h.busyboxLoaded(ctx); err != nil {
		return result{}, err
	}

	const count = 50
	names, err := h.runSleepers("bench-stats", count)
	defer h.remove(names)
	if err != nil {
		return result{}, err
	}
	berth := filepath.Join(h.bin, "berth")
	stats, err := median(h.runs, func() (time.Duration, error) {
		return timeCommand(berth, "--address", h.address, "--namespace", "bench", "stats", "--no-stream")
	})
	if err != nil {
		return result{}, err
	}
	ps, err := median(h.runs, func() (time.Duration, error) {
		return timeCommand(berth, "--address", h.address, "--namespace", "bench", "ps")
	})
	if err != nil {
		return result{}, err
	}
	const target = 200 * time.Millisecond
	return result{berth: stats, reference: ps, refName: "berth ps (50)", ratio: float64(stats) / float64(target),
		target: "<200ms", ok: stats < target,
		note: fmt.Sprintf("(%d running; two samples %v apart for CPU %%)", count, 100*time.Millisecond)}, nil
}
