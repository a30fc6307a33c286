package reaper

import (
	"os/exec"
	"testing"
	"time"
)

func TestWaitGetsTheStatusOfItsCommand(t *testing.T) {
	r := New()
	stop := make(chan struct{})
	defer close(stop)
	go r.Run(stop)
	for _, tc := range []struct {
		script string
		want   int
	}{{"exit 0", 0}, {"exit 3", 3}, {"kill -KILL $$", 128 + 9}} {
		cmd := exec.Command("/bin/sh", "-c", tc.script)
		c, err := r.Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Wait(cmd, c); got != tc.want {
			t.Errorf("%q: status %d, want %d", tc.script, got, tc.want)
		}
	}
}

func TestSubreaperReapsOrphans(t *testing.T) {
	// The test process becomes a subreaper for the rest of its life; that
	// only affects this package's test binary.
	if err := SetSubreaper(); err != nil {
		t.Skipf("cannot become a subreaper here: %v", err)
	}
	r := New()
	stop := make(chan struct{})
	defer close(stop)
	go r.Run(stop)
	all := r.Subscribe()
	defer r.Unsubscribe(all)
	// The grandchild outlives its parent and is reparented to us.
	cmd := exec.Command("/bin/sh", "-c", `/bin/sh -c 'sleep 0.2; exit 5' & exit 0`)
	c, err := r.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Wait(cmd, c); got != 0 {
		t.Fatalf("parent status %d", got)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case e := <-all:
			if e.Status == 5 {
				return
			}
		case <-deadline:
			t.Fatal("the orphaned grandchild's exit was never reaped")
		}
	}
}
