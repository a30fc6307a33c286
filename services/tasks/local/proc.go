package local

import (
	"context"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/shim"
)

// waitGone waits up to d for pid to exit and says whether it did. A shim
// is berthd's child only if this berthd started it, so it waits on a
// pidfd, which becomes readable when any process exits, and polls /proc
// only where pidfds are missing (kernels before 5.3).
func waitGone(pid int, d time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err == nil {
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		deadline := time.Now().Add(d)
		for {
			left := time.Until(deadline)
			if left <= 0 {
				return !shim.ProcessAlive(pid)
			}
			n, err := unix.Poll(fds, int(left.Milliseconds())+1)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n > 0 {
				break
			}
		}
		// A zombie is gone for our purpose; so is a pid that exited.
		return !shim.ProcessAlive(pid)
	}
	if err == unix.ESRCH {
		return true
	}
	deadline := time.Now().Add(d)
	for shim.ProcessAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// waitDone waits up to d for done to be closed and says whether it was.
func waitDone(ctx context.Context, done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	case <-t.C:
		return false
	}
}

// syscallKill kills a shim that does not stop when asked.
func syscallKill(pid int) {
	unix.Kill(pid, unix.SIGKILL)
}
