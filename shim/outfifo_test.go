package shim

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestOutputFifoWithoutReaderDoesNotStall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := openOutputFifo(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	line := bytes.Repeat([]byte("x"), 1023)
	line = append(line, '\n')
	start := time.Now()
	// 4 MiB, far more than a fifo holds: only the first full write may wait.
	for i := 0; i < 4096; i++ {
		if n, err := w.Write(line); err != nil || n != len(line) {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if d := time.Since(start); d > stallTimeout+time.Second {
		t.Fatalf("4 MiB to an unread fifo took %v; want about %v (one stall)", d, stallTimeout)
	}
	if !w.stalled {
		t.Fatal("the writer does not know its reader is gone")
	}

	// A reader that comes back gets new output again once it drained the
	// fifo.
	r, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 1<<20)
	for {
		r.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := r.Read(buf)
		if n == 0 || err != nil {
			break
		}
	}
	if _, err := w.Write([]byte("back\n")); err != nil {
		t.Fatal(err)
	}
	if w.stalled {
		t.Fatal("the writer still drops output after the reader drained the fifo")
	}
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(io.LimitReader(r, 5))
	if err != nil || string(got) != "back\n" {
		t.Fatalf("read %q, %v; want %q", got, err, "back\n")
	}
}

func TestOutputFifoSlowReaderGetsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := openOutputFifo(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := os.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<15) // 512 KiB
	go func() {
		for i := 0; i < len(want); i += 4096 {
			w.Write(want[i : i+4096])
		}
		w.Close()
	}()
	var got bytes.Buffer
	buf := make([]byte, 8192)
	for got.Len() < len(want) {
		time.Sleep(time.Millisecond) // slower than the writer, within stallTimeout
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("a slow reader got %d of %d bytes, or other bytes", got.Len(), len(want))
	}
}
