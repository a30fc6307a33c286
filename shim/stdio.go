package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/fifo"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/shim/logs"
	"github.com/berth-engine/berth/shim/runtime"
)

// stdio is what a caller asked for a process's stdio.
type stdio struct {
	terminal              bool
	stdin, stdout, stderr string // fifo paths; empty means none
}

// processIO plumbs one process's stdio: pipes (or the pty) between the
// runtime and the shim, and copiers from there to the fifos and the log.
type processIO struct {
	// runtimeIO is handed to the runtime; the shim closes its copies once
	// the process exists.
	runtimeIO runtime.IO
	// consoleSocket receives the pty master when terminal is set.
	consoleSocket *consoleSocket

	// outR and errR are the shim's ends of the stdout and stderr pipes.
	outR, errR *os.File

	mu     sync.Mutex
	stdinW io.WriteCloser // the process's stdin (pipe or pty master)
	stdinR io.Closer      // the stdin fifo
	// stdinDone is closed when the copier from the stdin fifo ends.
	stdinDone chan struct{}
	console   console.Console
	closers   []io.Closer
	started   bool

	copies sync.WaitGroup
	done   chan struct{} // closed when every output copier has finished
}

// newProcessIO prepares the stdio for a process about to be created: a
// console socket for a terminal, else pipes for the streams someone reads
// (a fifo, or the log when logged); the others are /dev/null.
func newProcessIO(dir string, s stdio, logged bool) (_ *processIO, retErr error) {
	p := &processIO{done: make(chan struct{})}
	defer func() {
		if retErr != nil {
			p.closeRuntimeIO()
			p.close()
		}
	}()
	if s.terminal {
		cs, err := newConsoleSocket(dir)
		if err != nil {
			return nil, err
		}
		p.consoleSocket = cs
		return p, nil
	}
	if s.stdin != "" {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("making the stdin pipe: %w", err)
		}
		p.runtimeIO.Stdin, p.stdinW = r, w
	}
	if s.stdout != "" || logged {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("making the stdout pipe: %w", err)
		}
		p.runtimeIO.Stdout, p.outR = w, r
	}
	if s.stderr != "" || logged {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("making the stderr pipe: %w", err)
		}
		p.runtimeIO.Stderr, p.errR = w, r
	}
	return p, nil
}

// closeRuntimeIO closes the shim's copies of the runtime's ends of the
// pipes: once the process has them, only it may hold the write ends, so
// that its exit ends the copiers.
func (p *processIO) closeRuntimeIO() {
	for _, f := range []*os.File{p.runtimeIO.Stdin, p.runtimeIO.Stdout, p.runtimeIO.Stderr} {
		if f != nil {
			f.Close()
		}
	}
	p.runtimeIO = runtime.IO{}
}

// start starts the copiers once the runtime has created the process.
func (p *processIO) start(ctx context.Context, s stdio, log *logs.Writer) error {
	p.closeRuntimeIO()
	p.mu.Lock()
	p.started = true
	p.mu.Unlock()
	if p.consoleSocket != nil {
		con, err := p.consoleSocket.receive(ctx)
		p.consoleSocket.close()
		if err != nil {
			return err
		}
		p.console = con
		p.stdinW = con
		p.closers = append(p.closers, con)
		out, err := openOutput(ctx, s.stdout)
		if err != nil {
			return err
		}
		p.copyOut("stdout", ptyReader{con}, out, log)
	} else {
		out, err := openOutput(ctx, s.stdout)
		if err != nil {
			return err
		}
		errw, err := openOutput(ctx, s.stderr)
		if err != nil {
			return err
		}
		if p.outR != nil {
			p.copyOut("stdout", p.outR, out, log)
		}
		if p.errR != nil {
			p.copyOut("stderr", p.errR, errw, log)
		}
	}
	go func() {
		p.copies.Wait()
		close(p.done)
	}()
	if s.stdin != "" && p.stdinW != nil {
		// Not the request's context: the open completes in the background
		// when the caller opens its end, long after the request.
		in, err := fifo.OpenFifo(context.WithoutCancel(ctx), s.stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("opening stdin fifo %s: %w", s.stdin, err)
		}
		done := make(chan struct{})
		p.mu.Lock()
		p.stdinR, p.stdinDone = in, done
		p.mu.Unlock()
		w := p.stdinW
		go func() {
			defer close(done)
			for {
				io.Copy(w, in)
				// End of input: the process reads end of file, except on a
				// terminal, which stays open for the container and takes the
				// next writer of the fifo (a client that attaches).
				if p.console == nil {
					p.closeStdin()
					return
				}
				next, err := fifo.OpenFifo(context.WithoutCancel(ctx), s.stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
				p.mu.Lock()
				if err != nil || p.stdinR != in {
					// The fifo is gone, or stdin was closed meanwhile.
					p.mu.Unlock()
					if next != nil {
						next.Close()
					}
					return
				}
				in.Close()
				in, p.stdinR = next, next
				p.mu.Unlock()
			}
		}()
	}
	return nil
}

// copyOut copies one output stream to its fifo and the log.
func (p *processIO) copyOut(stream string, r io.ReadCloser, out io.WriteCloser, log *logs.Writer) {
	p.copies.Add(1)
	go func() {
		defer p.copies.Done()
		defer r.Close()
		if out != nil {
			defer out.Close()
		}
		switch {
		case log != nil:
			// The client gets each read as it comes, not line by line as
			// the log: a prompt or an echoed keystroke has no newline.
			var src io.Reader = r
			if out != nil {
				src = io.TeeReader(r, out)
			}
			log.Copy(stream, src, nil)
		case out != nil:
			io.Copy(out, r)
		default:
			io.Copy(io.Discard, r)
		}
	}()
}

// openOutput opens an output fifo (see outputFifo: a client that detaches
// or stops reading never stalls the process).
func openOutput(ctx context.Context, path string) (io.WriteCloser, error) {
	if path == "" {
		return nil, nil
	}
	f, err := openOutputFifo(path)
	if err != nil {
		return nil, fmt.Errorf("opening output fifo: %w", err)
	}
	return f, nil
}

// closeInput closes the process's stdin for CloseIO. A client closes its
// end of the stdin fifo before it asks, so the copier is let drain what is
// still in the fifo (and end at its end of file) before stdin is closed.
func (p *processIO) closeInput() {
	p.mu.Lock()
	done := p.stdinDone
	if p.console != nil {
		done = nil // a terminal's copier waits for writers for ever
	}
	p.mu.Unlock()
	if done != nil {
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	p.closeStdin()
}

// closeStdin closes the process's stdin.
func (p *processIO) closeStdin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdinR != nil {
		p.stdinR.Close()
		p.stdinR = nil
	}
	if p.stdinW != nil && p.console == nil {
		p.stdinW.Close()
	}
	p.stdinW = nil
}

// wait waits for the output copiers to drain, at most timeout: a process
// that left a child holding the pipe open must not block the exit forever.
func (p *processIO) wait(timeout time.Duration) {
	select {
	case <-p.done:
	case <-time.After(timeout):
	}
}

// close closes the stdin side and the console.
func (p *processIO) close() {
	p.closeStdin()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.closers {
		c.Close()
	}
	p.closers = nil
	if !p.started {
		// The copiers, which close the readers, never ran.
		for _, f := range []*os.File{p.outR, p.errR} {
			if f != nil {
				f.Close()
			}
		}
	}
	if p.consoleSocket != nil {
		p.consoleSocket.close()
	}
}

// resize sets the terminal's window size.
func (p *processIO) resize(width, height uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.console == nil {
		return errors.New("the process has no terminal")
	}
	return p.console.Resize(console.WinSize{Width: uint16(width), Height: uint16(height)})
}

// ptyReader turns the EIO a pty master reads once every slave is closed
// into the end of file it means.
type ptyReader struct{ console.Console }

func (r ptyReader) Read(b []byte) (int, error) {
	n, err := r.Console.Read(b)
	if errors.Is(err, unix.EIO) {
		return n, io.EOF
	}
	return n, err
}

// consoleSocket is the unix socket the runtime sends a pty master to.
type consoleSocket struct {
	dir string
	l   *net.UnixListener
}

func newConsoleSocket(parent string) (*consoleSocket, error) {
	// A unix socket path has at most 107 bytes; a bundle under a long
	// state folder leaves too few, so the socket goes to the temporary
	// folder then.
	if len(parent)+len("/berth-pty1234567890/s") > 107 {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "berth-pty")
	if err != nil {
		return nil, fmt.Errorf("making the console socket: %w", err)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s"), Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("making the console socket: %w", err)
	}
	return &consoleSocket{dir: dir, l: l}, nil
}

func (c *consoleSocket) path() string { return filepath.Join(c.dir, "s") }

// receive accepts the runtime's connection and reads the pty master it sends.
func (c *consoleSocket) receive(ctx context.Context) (console.Console, error) {
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.l.SetDeadline(deadline)
	conn, err := c.l.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("waiting for the runtime to send the terminal: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("receiving the terminal from the runtime: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receiving the terminal from the runtime: no file descriptor in the message (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("receiving the terminal from the runtime: no file descriptor in the message (%v)", err)
	}
	f := os.NewFile(uintptr(fds[0]), string(buf[:n]))
	con, err := console.ConsoleFromFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("receiving the terminal from the runtime: %w", err)
	}
	return con, nil
}

func (c *consoleSocket) close() {
	c.l.Close()
	os.RemoveAll(c.dir)
}
