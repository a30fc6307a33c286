package command

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/berth-engine/berth/cli/formatter"
)

// progressInterval is the shortest time between two updates of a progress
// line: ten a second are enough for a person and cheap for a terminal.
const progressInterval = 100 * time.Millisecond

// progress keeps one line on a terminal up to date with how many bytes
// went through ("Loading 12.3MB / 100MB"). A nil *progress does nothing.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	verb  string
	total int64 // 0 when unknown
	n     int64
	last  time.Time
	shown bool
}

func newProgress(w io.Writer, verb string, total int64) *progress {
	return &progress{w: w, verb: verb, total: total}
}

func (p *progress) add(n int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) >= progressInterval {
		p.last = now
		p.draw()
	}
}

func (p *progress) draw() {
	line := p.verb + " " + formatter.HumanSize(p.n)
	if p.total > 0 {
		line += " / " + formatter.HumanSize(p.total)
	}
	// \r returns to the start of the line, \x1b[K clears what a longer
	// earlier line left.
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	p.shown = true
}

// done clears the line, so that what the command prints next starts clean.
func (p *progress) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

type progressReader struct {
	r io.Reader
	p *progress
}

func (r progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.add(n)
	return n, err
}

type progressWriter struct {
	w io.Writer
	p *progress
}

func (w progressWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	w.p.add(n)
	return n, err
}
