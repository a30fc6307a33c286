package exchange

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/namespaces"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	"github.com/berth-engine/berth/services/events"
)

// next returns the next envelope or fails after a second.
func next(t *testing.T, ch <-chan *events.Envelope) *events.Envelope {
	t.Helper()
	select {
	case env, ok := <-ch:
		if !ok {
			t.Fatal("subscription ended unexpectedly")
		}
		return env
	case <-time.After(time.Second):
		t.Fatal("no event within a second")
	}
	return nil
}

// ended waits for ch to close, draining it, and returns the error on errs.
func ended(t *testing.T, ch <-chan *events.Envelope, errs <-chan error) error {
	t.Helper()
	timeout := time.After(time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return <-errs
			}
		case <-timeout:
			t.Fatal("subscription did not end within a second")
		}
	}
}

func TestFanOutAndFilters(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ex := New()
	all, _ := ex.Subscribe(ctx)
	imagesOnly, _ := ex.Subscribe(ctx, `topic~="^/images/"`)
	otherNS, _ := ex.Subscribe(ctx, `namespace==other`)

	before := time.Now()
	ev := &eventsv1.ImageCreate{Name: "docker.io/library/busybox:latest"}
	if err := ex.Publish(namespaces.WithNamespace(ctx, "default"), "/images/create", ev); err != nil {
		t.Fatal(err)
	}
	if err := ex.Publish(namespaces.WithNamespace(ctx, "other"), "/content/delete", &eventsv1.ContentDelete{Digest: "sha256:x"}); err != nil {
		t.Fatal(err)
	}

	env := next(t, all)
	if env.Namespace != "default" || env.Topic != "/images/create" || !proto.Equal(env.Event, ev) {
		t.Fatalf("unexpected envelope %+v", env)
	}
	if env.Timestamp.Before(before) || env.Timestamp.After(time.Now()) {
		t.Fatalf("timestamp %v not set at publish time", env.Timestamp)
	}
	if env := next(t, all); env.Topic != "/content/delete" {
		t.Fatalf("second event to the unfiltered subscriber: %+v", env)
	}
	if env := next(t, imagesOnly); env.Topic != "/images/create" {
		t.Fatalf("topic filter let through %+v", env)
	}
	if env := next(t, otherNS); env.Namespace != "other" {
		t.Fatalf("namespace filter let through %+v", env)
	}
	for name, ch := range map[string]<-chan *events.Envelope{"topic": imagesOnly, "namespace": otherNS} {
		select {
		case env := <-ch:
			t.Fatalf("%s filter let through %+v", name, env)
		default:
		}
	}
}

func TestSlowSubscriberIsDroppedWithoutBlocking(t *testing.T) {
	ctx := namespaces.WithNamespace(context.Background(), "default")
	ex := New()
	ex.buffer = 4
	slowCh, slowErrs := ex.Subscribe(ctx)
	fastCh, _ := ex.Subscribe(ctx)

	publish := func(n int) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < n; i++ {
				if err := ex.Publish(ctx, "/test/event", &eventsv1.ContentCreate{Size: int64(i)}); err != nil {
					t.Error(err)
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("publishing blocked on a slow subscriber")
		}
	}
	// Both buffers fill up; the fast subscriber then catches up, the slow
	// one never reads, so the next event overflows only the slow one.
	publish(4)
	for i := 0; i < 4; i++ {
		next(t, fastCh)
	}
	publish(3)
	for i := 0; i < 3; i++ {
		next(t, fastCh)
	}

	err := ended(t, slowCh, slowErrs)
	if !errdefs.IsResourceExhausted(err) {
		t.Fatalf("slow subscriber ended with %v, want a resource-exhausted error", err)
	}
	ex.mu.Lock()
	n := len(ex.subs)
	ex.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d subscriptions left, want only the fast one", n)
	}
}

func TestContextEndsSubscription(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ex := New()
	ch, errs := ex.Subscribe(ctx)
	cancel()
	if err := ended(t, ch, errs); err != nil {
		t.Fatalf("cancelled subscription ended with %v, want no error", err)
	}
	ex.mu.Lock()
	n := len(ex.subs)
	ex.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d subscriptions left after cancel", n)
	}
}

func TestCloseEndsSubscriptions(t *testing.T) {
	ex := New()
	ch, errs := ex.Subscribe(context.Background())
	ex.Close()
	if err := ended(t, ch, errs); !errdefs.IsUnavailable(err) {
		t.Fatalf("got %v, want unavailable", err)
	}
	ch, errs = ex.Subscribe(context.Background())
	if err := ended(t, ch, errs); !errdefs.IsUnavailable(err) {
		t.Fatalf("subscribe after close: got %v, want unavailable", err)
	}
}

func TestBadInput(t *testing.T) {
	ex := New()
	ch, errs := ex.Subscribe(context.Background(), `topic~="(`)
	if err := ended(t, ch, errs); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad filter: got %v, want invalid argument", err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "default")
	for _, topic := range []string{"", "images", "/images/", "//x", "/"} {
		if err := ex.Publish(ctx, topic, &eventsv1.ImageDelete{}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("topic %q: got %v, want invalid argument", topic, err)
		}
	}
	if err := ex.Publish(ctx, "/images/delete", nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("nil event: got %v, want invalid argument", err)
	}
	if err := ex.Publish(context.Background(), "/images/delete", &eventsv1.ImageDelete{}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("no namespace: got %v, want a failed precondition", err)
	}
}
