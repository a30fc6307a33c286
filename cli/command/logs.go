package command

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/internal/errdefs"
)

// logEntry is one line of a json-file log, as the shim writes it.
type logEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

type logsOptions struct {
	follow     bool
	timestamps bool
	tail       string
	since      string
}

func newLogsCommand(c *CLI) *cobra.Command {
	var o logsOptions
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			ctr, err := resolveContainer(ctx, cl, args[0])
			if err != nil {
				return err
			}
			dir, err := containerDir(ctx, cl, ctr.ID)
			if err != nil {
				return err
			}
			return c.printLogs(ctx, cl, ctr.ID, filepath.Join(dir, ctr.ID+"-json.log"), o, time.Now())
		},
	}
	flags := cmd.Flags()
	flags.BoolVarP(&o.follow, "follow", "f", false, "Follow log output")
	flags.BoolVarP(&o.timestamps, "timestamps", "t", false, "Show timestamps")
	flags.StringVar(&o.tail, "tail", "all", "Number of lines to show from the end of the logs")
	flags.StringVar(&o.since, "since", "", "Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)")
	return cmd
}

// parseSince reads --since: a duration before now, an RFC 3339 time or a
// Unix timestamp.
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	return time.Time{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid value for \"since\": %q is neither a duration (10m), a timestamp (2013-01-02T13:23:37Z) nor a Unix time", s)
}

// logFiles returns the log and its rotated files, oldest first.
func logFiles(path string) []string {
	var rotated []string
	for i := 1; ; i++ {
		p := path + "." + strconv.Itoa(i)
		if _, err := os.Stat(p); err != nil {
			break
		}
		rotated = append(rotated, p)
	}
	files := make([]string, 0, len(rotated)+1)
	for i := len(rotated) - 1; i >= 0; i-- {
		files = append(files, rotated[i])
	}
	return append(files, path)
}

func readEntries(path string, since time.Time) ([]logEntry, int64, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	entries, n, err := decodeEntries(f, since)
	return entries, n, err
}

// decodeEntries reads complete lines; it returns how many bytes they took,
// so that a follower resumes after the last complete line.
func decodeEntries(r io.Reader, since time.Time) ([]logEntry, int64, error) {
	br := bufio.NewReader(r)
	var (
		entries []logEntry
		n       int64
	)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if err == io.EOF {
				return entries, n, nil
			}
			return entries, n, err
		}
		n += int64(len(line))
		var e logEntry
		if json.Unmarshal(line, &e) != nil {
			continue // a damaged line: skip it, as Docker does
		}
		if !since.IsZero() && e.Time.Before(since) {
			continue
		}
		entries = append(entries, e)
	}
}

func (c *CLI) writeEntry(e logEntry, timestamps bool) {
	w := c.Out
	if e.Stream == "stderr" {
		w = c.Err
	}
	if timestamps {
		fmt.Fprint(w, e.Time.UTC().Format(time.RFC3339Nano)+" ")
	}
	fmt.Fprint(w, e.Log)
}

func (c *CLI) printLogs(ctx context.Context, cl *client.Client, id, path string, o logsOptions, now time.Time) error {
	since, err := parseSince(o.since, now)
	if err != nil {
		return err
	}
	tail := -1
	if o.tail != "all" && o.tail != "" {
		if tail, err = strconv.Atoi(o.tail); err != nil || tail < 0 {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid value for --tail: %q: give a number of lines or \"all\"", o.tail)
		}
	}
	var (
		all    []logEntry
		offset int64
	)
	files := logFiles(path)
	for i, f := range files {
		entries, n, err := readEntries(f, since)
		if err != nil {
			return fmt.Errorf("reading the log of container %s: %w", id, err)
		}
		all = append(all, entries...)
		if i == len(files)-1 {
			offset = n
		}
	}
	if tail >= 0 && len(all) > tail {
		all = all[len(all)-tail:]
	}
	for _, e := range all {
		c.writeEntry(e, o.timestamps)
	}
	if !o.follow {
		return nil
	}
	return c.followLog(ctx, cl, id, path, offset, since, o.timestamps)
}

// followLog prints what is appended to the log from offset on, until the
// container stops and its log is drained. It wakes on changes to the log's
// folder (inotify) and learns of the container's stop from berthd's events,
// so lines show as they are written. A rotation renames the log: the old
// file, still open, is read to its end before the new one is followed from
// its start, so no line is lost across it.
func (c *CLI) followLog(ctx context.Context, cl *client.Client, id, path string, offset int64, since time.Time, timestamps bool) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("following the log of container %s: %w", id, err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(path)); err != nil {
		return fmt.Errorf("following the log of container %s: %w", id, err)
	}
	// Subscribed before the first check of the task, so that no stop is
	// missed.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := taskChanges(wctx, cl)

	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	// drain prints the complete entries of f from offset on.
	drain := func() error {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return err
		}
		entries, n, err := decodeEntries(f, since)
		offset += n
		for _, e := range entries {
			c.writeEntry(e, timestamps)
		}
		return err
	}
	// Whether the container runs is asked at the start and after each task
	// event, not at each write to the log.
	running, err := taskRunning(ctx, cl, id)
	if err != nil {
		return err
	}
	for {
		for {
			if f == nil {
				nf, err := os.Open(path)
				if os.IsNotExist(err) {
					break // not written yet, or between a rename and the new file
				}
				if err != nil {
					return fmt.Errorf("following the log of container %s: %w", id, err)
				}
				if fi, err := nf.Stat(); err == nil && fi.Size() < offset {
					offset = 0 // rotated since the first read
				}
				f = nf
			}
			if err := drain(); err != nil {
				return fmt.Errorf("following the log of container %s: %w", id, err)
			}
			if !rotated(f, path) {
				break
			}
			// The old file was read to its end: go on with the new one.
			f.Close()
			f, offset = nil, 0
		}
		if !running {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.Events:
		case err := <-w.Errors:
			return fmt.Errorf("following the log of container %s: %w", id, err)
		case <-changed:
			if running, err = taskRunning(ctx, cl, id); err != nil {
				return err
			}
		}
	}
}

// taskRunning says whether the container's task runs.
func taskRunning(ctx context.Context, cl *client.Client, id string) (bool, error) {
	p, err := taskOf(ctx, cl, id)
	return isRunning(p), err
}

// rotated says whether path names a file other than f now.
func rotated(f *os.File, path string) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	cur, err := os.Stat(path)
	if err != nil {
		return os.IsNotExist(err)
	}
	return !os.SameFile(fi, cur)
}
