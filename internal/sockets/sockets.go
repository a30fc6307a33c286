// Package sockets listens on the unix sockets berth's daemons serve on.
package sockets

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-engine/berth/internal/errdefs"
)

// ListenUnix listens on the socket at path with mode 0660, creating its
// folder. A socket file left by a process that died is removed; one that
// answers is not, and neither is a file that is not a socket.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("creating the folder of socket %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket: remove it or choose another --address: %w", path, errdefs.ErrFailedPrecondition)
		}
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return nil, fmt.Errorf("another process is serving on %s: stop it or choose another --address: %w", path, errdefs.ErrUnavailable)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket %s: %w", path, err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return nil, fmt.Errorf("setting the mode of socket %s: %w", path, err)
	}
	return lis, nil
}
