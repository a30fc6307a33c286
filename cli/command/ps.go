package command

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/cli/formatter"
	"github.com/berth-engine/berth/cli/imageutil"
	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
)

const psTable = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"

var psHeader = formatter.Header{
	"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED",
	"CreatedAt": "CREATED AT", "Status": "STATUS", "State": "STATE", "Ports": "PORTS", "Names": "NAMES",
	"Labels": "LABELS", "Size": "SIZE",
}

// psRow is one line of `ps`, with the fields of Docker's templates.
type psRow struct {
	ID         string
	Image      string
	Command    string
	CreatedAt  string
	RunningFor string
	Status     string
	State      string
	Ports      string
	Names      string
	Labels     string
	// Size is the writable layer's size and, in parentheses, with the
	// image's (-s): "12B (virtual 1.2MB)".
	Size string
}

// psOptions are the flags of ps that choose and shape the rows.
type psOptions struct {
	all, noTrunc, size bool
	// last keeps the newest last containers; 0 or less keeps all, as
	// Docker's limit.
	last int
}

// psFilter is the -f filters of ps: each key's values are alternatives,
// and every key must match.
type psFilter map[string][]string

func parsePsFilter(args []string) (psFilter, error) {
	f := psFilter{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		switch {
		case !ok:
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "bad format of filter (expected name=value): %s", a)
		case k == "status":
			switch v {
			case "created", "running", "paused", "restarting", "exited", "dead":
			default:
				return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid filter 'status=%s': use created, running, paused, restarting, exited or dead", v)
			}
		case k == "exited":
			if _, err := strconv.Atoi(v); err != nil {
				return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid filter 'exited=%s': give an exit code, such as exited=0", v)
			}
		case k == "name", k == "label", k == "id", k == "ancestor":
		default:
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid filter '%s': use status, name, id, label, ancestor or exited", k)
		}
		f[k] = append(f[k], v)
	}
	return f, nil
}

// match reports whether container c, in state with exitCode (of its last
// run), passes f; descends answers the ancestor filter.
func (f psFilter) match(c containers.Container, state string, exitCode int, descends func(image, ancestor string) bool) bool {
	matches := func(key string, ok func(string) bool) bool {
		vs, set := f[key]
		if !set {
			return true
		}
		for _, v := range vs {
			if ok(v) {
				return true
			}
		}
		return false
	}
	return matches("status", func(v string) bool { return v == state }) &&
		matches("exited", func(v string) bool { return state == "exited" && v == strconv.Itoa(exitCode) }) &&
		matches("ancestor", func(v string) bool { return descends(c.Image, v) }) &&
		matches("name", func(v string) bool { return strings.Contains(c.Name, strings.TrimPrefix(v, "/")) }) &&
		matches("id", func(v string) bool { return strings.HasPrefix(c.ID, v) }) &&
		matches("label", func(v string) bool {
			k, val, hasVal := strings.Cut(v, "=")
			got, ok := c.Labels[k]
			return ok && (!hasVal || got == val)
		})
}

func newPsCommand(c *CLI) *cobra.Command {
	var (
		quiet   bool
		latest  bool
		o       = psOptions{last: -1}
		format  string
		filters []string
	)
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS]",
		Short: "List containers",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parsePsFilter(filters)
			if err != nil {
				return err
			}
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			if latest {
				o.last = 1
			}
			// As Docker: filters, -n and -l look at containers in every state.
			o.all = o.all || len(filters) > 0 || o.last > 0
			table := psTable
			if o.size {
				table += "\t{{.Size}}"
			}
			ff := formatter.Format(format)
			if quiet && (format == "" || format == formatter.TableFormatKey) {
				ff = "{{.ID}}"
			}
			// A template that shows the size has it computed, as in Docker.
			o.size = (o.size && !quiet) || strings.Contains(format, ".Size")
			rows, err := psRows(ctx, cl, f, o, time.Now())
			if err != nil {
				return err
			}
			return formatter.Write(c.Out, ff, formatter.Table{Default: table, Header: psHeader}, rows)
		},
	}
	flags := cmd.Flags()
	flags.BoolVarP(&o.all, "all", "a", false, "Show all containers (default shows just running)")
	flags.BoolVarP(&quiet, "quiet", "q", false, "Only display container IDs")
	flags.BoolVar(&o.noTrunc, "no-trunc", false, "Don't truncate output")
	// Docker's -n is --last here; the namespace is -n before "ps", or
	// --namespace.
	flags.StringVar(&c.namespace, "namespace", c.namespace, "namespace to work in")
	flags.IntVarP(&o.last, "last", "n", -1, "Show n last created containers (includes all states)")
	flags.BoolVarP(&latest, "latest", "l", false, "Show the latest created container (includes all states)")
	flags.BoolVarP(&o.size, "size", "s", false, "Display total file sizes")
	flags.StringVar(&format, "format", "", "Format output using a custom template: 'table', 'table TEMPLATE', 'json' or 'TEMPLATE'")
	flags.StringArrayVarP(&filters, "filter", "f", nil, "Filter output based on conditions provided (status=, name=, id=, label=, ancestor=, exited=)")
	return cmd
}

func psRows(ctx context.Context, cl *client.Client, f psFilter, o psOptions, now time.Time) ([]psRow, error) {
	ctrs, err := cl.Containers.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	resp, err := cl.Tasks.List(ctx, &tasksv1.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing tasks: %w", err)
	}
	tasks := map[string]*tasksv1.Process{}
	for _, p := range resp.GetTasks() {
		tasks[p.GetId()] = p
	}
	// Newest first, as Docker lists them.
	sortNewestFirst(ctrs)
	anc := newAncestry(imageutil.NewResolver(cl.Images, cl.Content))
	descends := func(image, ancestor string) bool { return anc.descends(ctx, image, ancestor) }
	var rows []psRow
	sizes := newSizer(cl)
	for _, ctr := range ctrs {
		if o.last > 0 && len(rows) >= o.last {
			break
		}
		state, status := containerStatus(ctr, tasks[ctr.ID], now)
		if (!o.all && state != "running" && state != "paused") || !f.match(ctr, state, exitCodeOf(ctr, tasks[ctr.ID]), descends) {
			continue
		}
		row := psRow{
			ID:         ctr.ID,
			Image:      displayName(ctr.Image),
			CreatedAt:  formatter.TimeString(ctr.CreatedAt),
			RunningFor: formatter.TimeAgo(ctr.CreatedAt, now),
			Status:     status,
			State:      state,
			Names:      ctr.Name,
			Labels:     joinLabels(ctr.Labels),
		}
		if s, err := specOf(ctr); err == nil && s.Process != nil {
			row.Command = strings.Join(s.Process.Args, " ")
		}
		if o.size {
			row.Size = sizes.of(ctx, ctr)
		}
		if !o.noTrunc {
			row.ID = formatter.TruncateID(row.ID)
			if r := []rune(row.Command); len(r) > 20 {
				row.Command = string(r[:19]) + "…"
			}
		}
		row.Command = strconv.Quote(row.Command)
		rows = append(rows, row)
	}
	return rows, nil
}

// exitCodeOf is the exit status of the container's last run: its stopped
// task's, or the one berthd recorded.
func exitCodeOf(c containers.Container, p *tasksv1.Process) int {
	if p != nil && p.GetStatus() == tasksv1.Status_STATUS_STOPPED {
		return int(p.GetExitStatus())
	}
	return int(containers.StateOf(c).ExitCode)
}

func sortNewestFirst(ctrs []containers.Container) {
	sort.SliceStable(ctrs, func(i, j int) bool { return ctrs[i].CreatedAt.After(ctrs[j].CreatedAt) })
}

func joinLabels(labels map[string]string) string {
	var parts []string
	for k, v := range labels {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

// containerStatus returns Docker's State ("created", "running", "paused",
// "restarting", "exited", "dead") and Status ("Up 3 seconds", "Exited (0)
// 2 seconds ago", "Restarting (1) 1 second ago", "Created") of a container
// with task p (nil when it has none).
func containerStatus(c containers.Container, p *tasksv1.Process, now time.Time) (state, status string) {
	st := containers.StateOf(c)
	if p != nil && (st.StartedAt.IsZero() || !st.Running && st.FinishedAt.After(st.StartedAt)) {
		// Started a moment ago: berthd has not recorded it yet.
		st.StartedAt = now
	}
	if p != nil {
		switch p.GetStatus() {
		case tasksv1.Status_STATUS_RUNNING:
			return "running", "Up " + formatter.HumanDuration(now.Sub(st.StartedAt))
		case tasksv1.Status_STATUS_PAUSED:
			return "paused", "Up " + formatter.HumanDuration(now.Sub(st.StartedAt)) + " (Paused)"
		case tasksv1.Status_STATUS_STOPPED:
			exited := now
			if p.GetExitedAt() != nil {
				exited = p.GetExitedAt().AsTime()
			}
			return "exited", fmt.Sprintf("Exited (%d) %s", p.GetExitStatus(), formatter.TimeAgo(exited, now))
		}
		return "created", "Created"
	}
	switch {
	case st.Dead:
		return "dead", "Dead"
	case st.Restarting && !containers.IntentOf(c).ManuallyStopped:
		return "restarting", fmt.Sprintf("Restarting (%d) %s", st.ExitCode, formatter.TimeAgo(st.FinishedAt, now))
	case !st.FinishedAt.IsZero():
		return "exited", fmt.Sprintf("Exited (%d) %s", st.ExitCode, formatter.TimeAgo(st.FinishedAt, now))
	}
	return "created", "Created"
}
