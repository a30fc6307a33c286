package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/fifo"
	"golang.org/x/term"

	"github.com/berth-engine/berth/cli/client"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
)

// attachOptions say which of a process's streams the CLI connects to its
// own, as Docker's attach options do.
type attachOptions struct {
	stdin, stdout, stderr bool
	// tty: the process has a terminal; its output is one stream.
	tty bool
	// detachKeys end the attachment, leaving the process running; only
	// with tty and stdin, as Docker.
	detachKeys []byte
	// sigProxy forwards the signals berth gets to the process; never with
	// tty, where ctrl-c is a byte the terminal turns into SIGINT.
	sigProxy bool
}

// errInputNotTTY is Docker's refusal of -it when stdin is not a terminal.
var errInputNotTTY = &statusError{code: ExitFailure, err: errors.New("the input device is not a TTY")}

// checkTTY refuses a terminal with stdin attached when berth's stdin is not
// a terminal, as Docker does: raw mode and the detach keys need one.
func (c *CLI) checkTTY(o attachOptions) error {
	if o.tty && o.stdin && !c.isTerminal(c.In) {
		return errInputNotTTY
	}
	return nil
}

// clientIO is the CLI's end of a process's stdio: fifos in a private
// folder that the shim opens, copiers between them and berth's streams,
// the local terminal in raw mode and the window size sent to the process.
type clientIO struct {
	c    *CLI
	o    attachOptions
	dir  string
	tio  taskIO
	in   io.WriteCloser // the stdin fifo
	outs []io.Closer

	copies   sync.WaitGroup // output copiers
	detached chan struct{}  // closed when the user typed the detach keys

	restore   func() // restores the local terminal; idempotent
	stopWinch func()
	// keep leaves the fifos in place when closing: the process outlives
	// this client (a detach) and `berth attach` may open them again.
	keep bool
	temp bool // dir is berth's own temporary folder: never kept

	// Without --sig-proxy, SIGINT and SIGTERM end the attachment instead
	// (the process goes on); interrupted is the signal that did.
	interrupt     chan os.Signal
	interrupted   syscall.Signal
	stopInterrupt func()
}

// newClientIO makes the fifos for o in dir (a new temporary folder when
// empty; else dir is made anew) and starts copying their output. ctx
// bounds the fifo opens: cancel it if the process never starts.
func (c *CLI) newClientIO(ctx context.Context, o attachOptions, dir string) (_ *clientIO, retErr error) {
	temp := dir == ""
	if temp {
		d, err := os.MkdirTemp("", "berth-io-")
		if err != nil {
			return nil, err
		}
		dir = d
	} else {
		// Fifos left by a client that detached from an earlier run.
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	cio := &clientIO{c: c, o: o, dir: dir, temp: temp, detached: make(chan struct{}), restore: func() {}, stopWinch: func() {}, stopInterrupt: func() {}}
	defer func() {
		if retErr != nil {
			cio.close()
		}
	}()
	cio.watchInterrupt()
	cio.tio = taskIO{dir: dir, terminal: o.tty}
	// With a terminal, stderr comes through the terminal too.
	for _, s := range []struct {
		path *string
		name string
		on   bool
		w    io.Writer
	}{{&cio.tio.stdout, "stdout", o.stdout, c.Out}, {&cio.tio.stderr, "stderr", o.stderr && !o.tty, c.Err}} {
		if !s.on {
			continue
		}
		*s.path = filepath.Join(dir, s.name)
		f, err := fifo.OpenFifo(ctx, *s.path, syscall.O_RDONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
		if err != nil {
			return nil, fmt.Errorf("creating the %s fifo: %w", s.name, err)
		}
		cio.outs = append(cio.outs, f)
		cio.copies.Add(1)
		go func(r io.Reader, w io.Writer) {
			defer cio.copies.Done()
			io.Copy(w, r)
		}(f, s.w)
	}
	if o.stdin {
		cio.tio.stdin = filepath.Join(dir, "stdin")
		f, err := fifo.OpenFifo(ctx, cio.tio.stdin, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_NONBLOCK, 0o700)
		if err != nil {
			return nil, fmt.Errorf("creating the stdin fifo: %w", err)
		}
		cio.in = f
	}
	return cio, nil
}

// watchInterrupt makes SIGINT and SIGTERM end the attachment when signals
// are not forwarded. It starts before the process does, so that no signal
// falls between.
func (cio *clientIO) watchInterrupt() {
	if cio.o.sigProxy {
		return
	}
	cio.interrupt = make(chan os.Signal, 1)
	signal.Notify(cio.interrupt, syscall.SIGINT, syscall.SIGTERM)
	cio.stopInterrupt = sync.OnceFunc(func() { signal.Stop(cio.interrupt) })
}

// taskIO is what the task is created with.
func (cio *clientIO) taskIO() *taskIO { return &cio.tio }

// setRaw puts the local terminal in raw mode when keystrokes go to the
// process's terminal: ctrl-c, ctrl-d and the arrows become bytes for it.
// close restores it.
func (cio *clientIO) setRaw() error {
	if !cio.o.tty || !cio.o.stdin {
		return nil
	}
	f, ok := cio.c.In.(*os.File)
	if !ok || !cio.c.isTerminal(f) {
		return nil
	}
	con, err := console.ConsoleFromFile(f)
	if err != nil {
		return fmt.Errorf("using the terminal: %w", err)
	}
	if err := con.SetRaw(); err != nil {
		return fmt.Errorf("setting the terminal to raw mode: %w", err)
	}
	cio.restore = sync.OnceFunc(func() { con.Reset() })
	return nil
}

// start begins copying berth's stdin to the process (id, execID) and
// keeping its terminal the size of berth's, once the process runs.
func (cio *clientIO) start(ctx context.Context, cl *client.Client, id, execID string) {
	if cio.o.tty {
		cio.watchSize(ctx, cl, id, execID)
	}
	if cio.in == nil {
		return
	}
	go cio.copyStdin(ctx, cl, id, execID)
}

// copyStdin copies berth's stdin to the stdin fifo. With a terminal, it
// watches for the detach keys; without, the end of berth's input closes
// the process's stdin, so that `echo hi | berth run -i busybox cat` ends.
func (cio *clientIO) copyStdin(ctx context.Context, cl *client.Client, id, execID string) {
	var scan *detachScanner
	if cio.o.tty && len(cio.o.detachKeys) > 0 {
		scan = &detachScanner{keys: cio.o.detachKeys}
	}
	buf := make([]byte, 32*1024)
	for {
		n, rerr := cio.c.In.Read(buf)
		data := buf[:n]
		detach := false
		if scan != nil {
			data, detach = scan.scan(data)
		}
		if len(data) > 0 {
			if _, err := cio.in.Write(data); err != nil {
				return
			}
		}
		if detach {
			close(cio.detached)
			return
		}
		if rerr != nil {
			break
		}
	}
	if scan != nil {
		cio.in.Write(scan.flush())
	}
	cio.in.Close()
	if !cio.o.tty {
		cl.Tasks.CloseIO(ctx, &tasksv1.CloseIORequest{ContainerId: id, ExecId: execID, Stdin: true})
	}
}

// watchSize sends the size of berth's terminal to the process's now and
// on every SIGWINCH, when berth's stdout is a terminal.
func (cio *clientIO) watchSize(ctx context.Context, cl *client.Client, id, execID string) {
	f, ok := cio.c.Out.(*os.File)
	if !ok || !cio.c.isTerminal(f) {
		return
	}
	resize := func() {
		w, h, err := term.GetSize(int(f.Fd()))
		if err != nil || w <= 0 || h <= 0 {
			return
		}
		cl.Tasks.ResizePty(ctx, &tasksv1.ResizePtyRequest{ContainerId: id, ExecId: execID, Width: uint32(w), Height: uint32(h)})
	}
	resize()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-winch:
				resize()
			}
		}
	}()
	cio.stopWinch = sync.OnceFunc(func() {
		signal.Stop(winch)
		close(done)
	})
}

// terminalSize is the size of berth's terminal when stdout is one.
func (c *CLI) terminalSize() (width, height int, ok bool) {
	f, isFile := c.Out.(*os.File)
	if !isFile || !c.isTerminal(f) {
		return 0, 0, false
	}
	w, h, err := term.GetSize(int(f.Fd()))
	return w, h, err == nil && w > 0 && h > 0
}

// wait waits for the process to exit, or for the user to detach
// (detached true, resp nil; interrupted is set when a signal did it).
func (cio *clientIO) wait(ctx context.Context, cl *client.Client, id, execID string) (resp *tasksv1.WaitResponse, detached bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		resp *tasksv1.WaitResponse
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		r, err := cl.Tasks.Wait(wctx, &tasksv1.WaitRequest{ContainerId: id, ExecId: execID})
		ch <- result{r, err}
	}()
	select {
	case r := <-ch:
		return r.resp, false, r.err
	case <-cio.detached:
	case sig := <-cio.interrupt:
		cio.interrupted, _ = sig.(syscall.Signal)
	}
	cio.keep = !cio.temp
	return nil, true, nil
}

// waitOutput waits until the shim closed the output fifos, which it does
// once it copied the process's last output, at most timeout.
func (cio *clientIO) waitOutput(timeout time.Duration) {
	done := make(chan struct{})
	go func() { cio.copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
	}
}

// close restores the terminal and removes the fifos. The shim keeps its
// ends open, so a process left running after a detach goes on writing to
// its log.
func (cio *clientIO) close() {
	cio.restore()
	cio.stopWinch()
	cio.stopInterrupt()
	if cio.in != nil {
		cio.in.Close()
	}
	for _, f := range cio.outs {
		f.Close()
	}
	if !cio.keep && cio.dir != "" {
		os.RemoveAll(cio.dir)
	}
}
