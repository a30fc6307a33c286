// Command bench measures berth against references run side by side on the
// same machine (sha256sum and cp, skopeo, runc, a trivial berth call) and prints
// ratios. It starts its own berthd on a temporary root.
//
//	bench [-bin DIR] [-only NAME[,NAME...]] [-runs N]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type result struct {
	name      string
	berth     time.Duration
	reference time.Duration
	refName   string
	// ratio is what the target is about, computed by the benchmark.
	ratio  float64
	target string
	ok     bool
	note   string
}

type benchmark struct {
	name string
	run  func(ctx context.Context, h *harness) (result, error)
}

func main() {
	self, _ := os.Executable()
	bin := flag.String("bin", filepath.Dir(self), "folder holding berthd, berth and mkimage")
	only := flag.String("only", "", "run only the benchmarks whose name contains one of these comma-separated words")
	runs := flag.Int("runs", 5, "measured runs per benchmark (the median is reported)")
	flag.Parse()

	ctx := context.Background()
	h, err := newHarness(ctx, *bin, *runs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	defer h.close()

	var results []result
	failed := false
	for _, b := range []benchmark{
		{"content-write-512MiB", benchContentWrite},
		{"load-100MB-5-layers", benchLoad},
		{"images-1000", benchImages},
		{"unpack-100MB-gzip", benchUnpackGzip},
		{"snapshot-ops", benchSnapshotOps},
		{"unpack-5-layers-parallel", benchUnpackParallel},
		{"run-rm-true", benchRunRmTrue},
		{"exec-true", benchExecTrue},
		{"fifty-containers", benchFiftyContainers},
		{"stats-fifty", benchStatsFifty},
		{"restart-fifty", benchRestartFifty},
	} {
		if !selected(b.name, *only) {
			continue
		}
		fmt.Fprintf(os.Stderr, "running %s...\n", b.name)
		r, err := b.run(ctx, h)
		if isSkip(err) {
			fmt.Fprintf(os.Stderr, "%s: %v\n", b.name, err)
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", b.name, err)
			failed = true
			continue
		}
		r.name = b.name
		results = append(results, r)
	}
	printResults(results)
	if failed {
		h.close() // os.Exit skips the deferred close, which stops berthd
		os.Exit(1)
	}
}

// selected reports whether the benchmark name contains one of the
// comma-separated words of only; an empty only selects every benchmark.
func selected(name, only string) bool {
	if only == "" {
		return true
	}
	for word := range strings.SplitSeq(only, ",") {
		if word != "" && strings.Contains(name, word) {
			return true
		}
	}
	return false
}

func printResults(results []result) {
	fmt.Printf("%-26s %12s %12s  %-26s %7s  %-12s %s\n", "BENCHMARK", "BERTH", "REFERENCE", "(REFERENCE IS)", "RATIO", "TARGET", "")
	for _, r := range results {
		verdict := "ok"
		if !r.ok {
			verdict = "MISSED"
		}
		fmt.Printf("%-26s %12s %12s  %-26s %7.2f  %-12s %s %s\n", r.name, round(r.berth), round(r.reference),
			r.refName, r.ratio, r.target, verdict, r.note)
	}
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// median runs f n times and returns the median duration.
func median(n int, f func() (time.Duration, error)) (time.Duration, error) {
	var ds []time.Duration
	for range n {
		d, err := f()
		if err != nil {
			return 0, err
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}
