package command

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
)

// clockTicks is USER_HZ, the unit of the times in /proc/<pid>/stat; it is
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// topRow is one process as `ps -ef` shows it.
type topRow struct {
	UID, PID, PPID, C, STIME, TTY, TIME, CMD string
}

func newTopCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "top CONTAINER",
		Short: "Display the running processes of a container",
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
			p, err := taskOf(ctx, cl, ctr.ID)
			if err != nil {
				return err
			}
			if !isRunning(p) {
				return errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s is not running", ctr.ID)
			}
			resp, err := cl.Tasks.ListPids(ctx, &tasksv1.ListPidsRequest{ContainerId: ctr.ID})
			if err != nil {
				return fmt.Errorf("listing the processes of container %s: %w", ctr.Name, err)
			}
			boot, err := bootTime()
			if err != nil {
				return err
			}
			now := time.Now()
			w := tabwriter.NewWriter(c.Out, 20, 1, 3, ' ', 0)
			fmt.Fprintln(w, "UID\tPID\tPPID\tC\tSTIME\tTTY\tTIME\tCMD")
			for _, pi := range resp.GetProcesses() {
				r, err := readTopRow("/proc", pi.GetPid(), boot, now)
				if err != nil {
					continue // the process ended meanwhile
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.UID, r.PID, r.PPID, r.C, r.STIME, r.TTY, r.TIME, r.CMD)
			}
			return w.Flush()
		},
	}
}

// bootTime reads when the machine booted, from /proc/stat.
func bootTime() (time.Time, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "btime "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("reading the boot time in /proc/stat: %w", err)
			}
			return time.Unix(n, 0), nil
		}
	}
	return time.Time{}, fmt.Errorf("no boot time in /proc/stat")
}

// readTopRow reads process pid from procfs as `ps -ef` shows it.
func readTopRow(procfs string, pid uint32, boot, now time.Time) (topRow, error) {
	dir := filepath.Join(procfs, strconv.FormatUint(uint64(pid), 10))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return topRow{}, err
	}
	// The command name is in parentheses and may hold spaces: the fields
	// are after the last ')'.
	s := string(stat)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return topRow{}, fmt.Errorf("malformed %s/stat", dir)
	}
	comm := s[open+1 : end]
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state) of proc(5).
	if len(f) < 20 {
		return topRow{}, fmt.Errorf("malformed %s/stat", dir)
	}
	field := func(n int) uint64 { v, _ := strconv.ParseUint(f[n-3], 10, 64); return v }
	ppid, ttyNr := field(4), field(7)
	cpu := time.Duration(field(14)+field(15)) * time.Second / clockTicks
	start := boot.Add(time.Duration(field(22)) * time.Second / clockTicks)

	r := topRow{PID: strconv.FormatUint(uint64(pid), 10), PPID: strconv.FormatUint(ppid, 10), TTY: ttyName(ttyNr)}
	r.C = "0"
	if elapsed := now.Sub(start); elapsed > 0 {
		r.C = strconv.FormatInt(int64(cpu*100/elapsed), 10)
	}
	r.STIME = start.Format("15:04")
	if start.YearDay() != now.YearDay() || start.Year() != now.Year() {
		r.STIME = start.Format("Jan02")
	}
	secs := int64(cpu / time.Second)
	r.TIME = fmt.Sprintf("%02d:%02d:%02d", secs/3600, secs/60%60, secs%60)
	if days := secs / 86400; days > 0 {
		r.TIME = fmt.Sprintf("%d-%02d:%02d:%02d", days, secs/3600%24, secs/60%60, secs%60)
	}
	r.UID = "?"
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil {
		for line := range strings.SplitSeq(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				if uf := strings.Fields(v); len(uf) > 1 {
					r.UID = userName(uf[1]) // the effective uid, as ps shows
				}
				break
			}
		}
	}
	r.CMD = "[" + comm + "]"
	if cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(cmdline) > 0 {
		r.CMD = strings.Join(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"), " ")
	}
	return r, nil
}

// userName is the host's name for uid, as ps shows it, or the number.
func userName(uid string) string {
	if u, err := user.LookupId(uid); err == nil {
		return u.Username
	}
	return uid
}

// ttyName names a terminal from its device number, "?" for none.
func ttyName(nr uint64) string {
	if nr == 0 {
		return "?"
	}
	major := (nr >> 8) & 0xfff
	minor := (nr & 0xff) | ((nr >> 12) & 0xfff00)
	switch {
	case major == 136:
		return "pts/" + strconv.FormatUint(minor, 10)
	case major == 4 && minor < 64:
		return "tty" + strconv.FormatUint(minor, 10)
	}
	return "?"
}
