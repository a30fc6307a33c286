package command

import (
	"context"
	"fmt"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/cli/formatter"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	typesv1 "github.com/berth-engine/berth/proto/types/v1"
	"github.com/berth-engine/berth/services/containers"
)

const statsTable = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"

var statsHeader = formatter.Header{
	"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %",
	"MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
}

const (
	// statsInterval is how often the streaming view is redrawn, as Docker.
	statsInterval = time.Second
	// statsSnapshotInterval separates the two samples of --no-stream that
	// CPU % is computed from: short, so that one look stays quick.
	statsSnapshotInterval = 100 * time.Millisecond
	// clearScreen moves to the top of a cleared terminal before a redraw.
	clearScreen = "\033[2J\033[H"
)

// statsRow is one line of `stats`, with the fields and JSON keys of
// Docker's.
type statsRow struct {
	BlockIO   string
	CPUPerc   string
	Container string
	ID        string
	MemPerc   string
	MemUsage  string
	Name      string
	NetIO     string
	PIDs      string
}

// statsTarget is a container stats shows; arg is how the user named it.
type statsTarget struct {
	arg string
	ctr containers.Container
}

type statsOptions struct {
	all, noStream, noTrunc bool
	format                 string
}

func newStatsCommand(c *CLI) *cobra.Command {
	var o statsOptions
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] [CONTAINER...]",
		Short: "Display a live stream of container(s) resource usage statistics",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			return c.runStats(ctx, cl, o, args)
		},
	}
	flags := cmd.Flags()
	flags.BoolVarP(&o.all, "all", "a", false, "Show all containers (default shows just running)")
	flags.BoolVar(&o.noStream, "no-stream", false, "Disable streaming stats and only pull the first result")
	flags.BoolVar(&o.noTrunc, "no-trunc", false, "Do not truncate output")
	flags.StringVar(&o.format, "format", "", "Format output using a custom template: 'table', 'table TEMPLATE', 'json' or 'TEMPLATE'")
	return cmd
}

func (c *CLI) runStats(ctx context.Context, cl *client.Client, o statsOptions, args []string) error {
	// Named containers are resolved once; without names the running (or,
	// with -a, all) containers are found again at each redraw.
	var named []statsTarget
	for _, arg := range args {
		ctr, err := resolveContainer(ctx, cl, arg)
		if err != nil {
			return err
		}
		named = append(named, statsTarget{arg: arg, ctr: ctr})
	}
	round := func(fixed []statsTarget) ([]statsTarget, map[string]*typesv1.Metrics, error) {
		if fixed != nil {
			m, err := sampleStats(ctx, cl, fixed)
			return fixed, m, err
		}
		return sampleAll(ctx, cl, o.all)
	}
	var fixed []statsTarget
	if len(args) > 0 {
		fixed = named
	}
	// Rounds start interval apart, so that each container's two samples
	// are about interval apart whatever a round takes.
	next := time.Now()
	ts, prev, err := round(fixed)
	if err != nil {
		return err
	}
	interval := statsInterval
	if o.noStream {
		// One look: the second sample is of the same containers.
		interval, fixed = statsSnapshotInterval, ts
		if fixed == nil {
			fixed = []statsTarget{}
		}
	}
	tty := c.Streams.isTerminal(c.Out)
	for {
		next = next.Add(interval)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(next)):
		}
		if now := time.Now(); next.Before(now) {
			next = now // a slow round does not make the next ones hurry
		}
		ts, cur, err := round(fixed)
		if err != nil {
			return err
		}
		rows := make([]statsRow, 0, len(ts))
		for _, t := range ts {
			rows = append(rows, newStatsRow(t, prev[t.ctr.ID], cur[t.ctr.ID], o.noTrunc))
		}
		if !o.noStream && tty && formatter.Format(o.format).IsTable() {
			fmt.Fprint(c.Out, clearScreen)
		}
		if err := formatter.Write(c.Out, formatter.Format(o.format), formatter.Table{Default: statsTable, Header: statsHeader}, rows); err != nil {
			return err
		}
		if o.noStream {
			return nil
		}
		prev = cur
	}
}

// sampleAll samples every running task of the namespace in one call and
// returns the running containers (all containers with all set), newest
// first as ps lists them, with their samples. A task that cannot be
// sampled is not running.
func sampleAll(ctx context.Context, cl *client.Client, all bool) ([]statsTarget, map[string]*typesv1.Metrics, error) {
	ctrs, err := cl.Containers.List(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("listing containers: %w", err)
	}
	resp, err := cl.Tasks.Metrics(ctx, &tasksv1.MetricsRequest{})
	if err != nil {
		return nil, nil, fmt.Errorf("reading container stats: %w", err)
	}
	samples := metricsByID(resp)
	sortNewestFirst(ctrs)
	ts := []statsTarget{}
	for _, ctr := range ctrs {
		if _, ok := samples[ctr.ID]; all || ok {
			ts = append(ts, statsTarget{arg: ctr.ID, ctr: ctr})
		}
	}
	return ts, samples, nil
}

// sampleStats asks berthd for one sample of each target, in one call that
// berthd fans out to the shims; a container that is not running has none.
func sampleStats(ctx context.Context, cl *client.Client, ts []statsTarget) (map[string]*typesv1.Metrics, error) {
	if len(ts) == 0 {
		return map[string]*typesv1.Metrics{}, nil
	}
	ids := make([]string, 0, len(ts))
	for _, t := range ts {
		ids = append(ids, t.ctr.ID)
	}
	resp, err := cl.Tasks.Metrics(ctx, &tasksv1.MetricsRequest{ContainerIds: ids})
	if err != nil {
		return nil, fmt.Errorf("reading container stats: %w", err)
	}
	return metricsByID(resp), nil
}

func metricsByID(resp *tasksv1.MetricsResponse) map[string]*typesv1.Metrics {
	out := make(map[string]*typesv1.Metrics, len(resp.GetMetrics()))
	for _, m := range resp.GetMetrics() {
		if m.GetMetrics() != nil {
			out[m.GetContainerId()] = m.GetMetrics()
		}
	}
	return out
}

// newStatsRow computes Docker's columns from two samples of a container:
// CPU % over the time between them, the rest from cur. A container
// without a sample shows zeros, as Docker shows a stopped one.
func newStatsRow(t statsTarget, prev, cur *typesv1.Metrics, noTrunc bool) statsRow {
	row := statsRow{Container: t.arg, ID: t.ctr.ID, Name: t.ctr.Name}
	if !noTrunc {
		row.ID = formatter.TruncateID(row.ID)
	}
	if cur == nil {
		cur = &typesv1.Metrics{}
	}
	var cpu float64
	if prev != nil && cur.GetCpuUsageNs() > prev.GetCpuUsageNs() && cur.GetSystemCpuNs() > prev.GetSystemCpuNs() {
		cpuDelta := float64(cur.GetCpuUsageNs() - prev.GetCpuUsageNs())
		sysDelta := float64(cur.GetSystemCpuNs() - prev.GetSystemCpuNs())
		cpu = cpuDelta / sysDelta * float64(cur.GetOnlineCpus()) * 100
	}
	// Docker leaves the inactive file cache out of the usage.
	mem := cur.GetMemoryUsage()
	if inactive := cur.GetMemoryInactiveFile(); inactive < mem {
		mem -= inactive
	}
	var memPerc float64
	if limit := cur.GetMemoryLimit(); limit > 0 {
		memPerc = float64(mem) / float64(limit) * 100
	}
	row.CPUPerc = fmt.Sprintf("%.2f%%", cpu)
	row.MemUsage = units.BytesSize(float64(mem)) + " / " + units.BytesSize(float64(cur.GetMemoryLimit()))
	row.MemPerc = fmt.Sprintf("%.2f%%", memPerc)
	row.NetIO = decimalSize(cur.GetNetRxBytes()) + " / " + decimalSize(cur.GetNetTxBytes())
	row.BlockIO = decimalSize(cur.GetBlkioReadBytes()) + " / " + decimalSize(cur.GetBlkioWriteBytes())
	row.PIDs = fmt.Sprintf("%d", cur.GetPidsCurrent())
	return row
}

// decimalSize prints bytes as Docker's stats does ("1.2kB", "0B").
func decimalSize(n uint64) string {
	return units.HumanSizeWithPrecision(float64(n), 3)
}
