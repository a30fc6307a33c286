// Package exchange fans events out from publishers to subscribers inside
// berthd. Publishing never waits for a subscriber: each subscriber has a
// bounded buffer, and one that falls that far behind is dropped with an error
// rather than slowing down the service that published.
package exchange

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/filters"
	"github.com/berth-engine/berth/internal/namespaces"
	"github.com/berth-engine/berth/services/events"
)

// subscriberBuffer is how many events a subscriber may have pending before
// it is dropped.
const subscriberBuffer = 1024

// Exchange implements events.Publisher and events.Subscriber.
type Exchange struct {
	mu     sync.Mutex
	subs   map[*subscription]struct{}
	closed bool
	buffer int
}

var (
	_ events.Publisher  = (*Exchange)(nil)
	_ events.Subscriber = (*Exchange)(nil)
)

// New returns an exchange with no subscribers.
func New() *Exchange {
	return &Exchange{subs: map[*subscription]struct{}{}, buffer: subscriberBuffer}
}

type subscription struct {
	filter filters.Filter
	ch     chan *events.Envelope
	errs   chan error
	done   chan struct{} // closed when the subscription ends
}

// Publish sends event on topic in the namespace of ctx.
func (e *Exchange) Publish(ctx context.Context, topic string, event proto.Message) error {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return fmt.Errorf("publishing on %q: %w", topic, err)
	}
	return e.Forward(ctx, &events.Envelope{
		Timestamp: time.Now().UTC(),
		Namespace: ns,
		Topic:     topic,
		Event:     event,
	})
}

// Forward sends an envelope made elsewhere (for example by a shim) as it is.
// It does not look at ctx: a change that happened is announced even when the
// request that made it has gone.
func (e *Exchange) Forward(_ context.Context, env *events.Envelope) error {
	if err := validateTopic(env.Topic); err != nil {
		return err
	}
	if env.Event == nil {
		return fmt.Errorf("event on topic %q is empty: %w", env.Topic, errdefs.ErrInvalidArgument)
	}
	a := adapt(env)
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.subs {
		if !s.filter.Match(a) {
			continue
		}
		select {
		case s.ch <- env:
		default:
			e.endLocked(s, fmt.Errorf("event subscriber fell more than %d events behind and was dropped: read events faster, or subscribe with narrower filters: %w",
				e.buffer, errdefs.ErrResourceExhausted))
		}
	}
	return nil
}

// Subscribe streams the events matching any of the filters (over the fields
// topic and namespace) until ctx ends. When the subscription ends, ch is
// closed after errs has received the reason, if there is one other than ctx
// ending; errs is then closed too.
func (e *Exchange) Subscribe(ctx context.Context, fs ...string) (<-chan *events.Envelope, <-chan error) {
	s := &subscription{
		ch:   make(chan *events.Envelope, e.buffer),
		errs: make(chan error, 1),
		done: make(chan struct{}),
	}
	f, err := filters.Parse(fs...)
	if err != nil {
		s.end(fmt.Errorf("subscribing to events: %w", err))
		return s.ch, s.errs
	}
	s.filter = f

	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		s.end(fmt.Errorf("berthd is shutting down: subscribe again once it is back: %w", errdefs.ErrUnavailable))
		return s.ch, s.errs
	}
	e.subs[s] = struct{}{}
	e.mu.Unlock()

	go func() {
		select {
		case <-ctx.Done():
			e.mu.Lock()
			e.endLocked(s, nil)
			e.mu.Unlock()
		case <-s.done:
		}
	}()
	return s.ch, s.errs
}

// Close ends every subscription with ErrUnavailable and refuses new ones, so
// that long-lived event streams do not hold up a graceful shutdown. Publishing
// after Close reaches nobody.
func (e *Exchange) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for s := range e.subs {
		e.endLocked(s, fmt.Errorf("berthd is shutting down: subscribe again once it is back: %w", errdefs.ErrUnavailable))
	}
}

// endLocked removes s, once; e.mu is held.
func (e *Exchange) endLocked(s *subscription, err error) {
	if _, ok := e.subs[s]; !ok {
		return
	}
	delete(e.subs, s)
	s.end(err)
}

func (s *subscription) end(err error) {
	if err != nil {
		s.errs <- err // buffered for exactly this one error
	}
	close(s.errs)
	close(s.ch)
	close(s.done)
}

// validateTopic accepts "/a/b" paths of non-empty parts.
func validateTopic(topic string) error {
	if !strings.HasPrefix(topic, "/") || strings.HasSuffix(topic, "/") || strings.Contains(topic, "//") {
		return fmt.Errorf("event topic %q must be a path such as \"/images/create\": %w", topic, errdefs.ErrInvalidArgument)
	}
	return nil
}

func adapt(env *events.Envelope) filters.Adaptor {
	return filters.AdaptorFunc(func(path []string) (string, bool) {
		if len(path) != 1 {
			return "", false
		}
		switch path[0] {
		case "topic":
			return env.Topic, true
		case "namespace":
			return env.Namespace, true
		}
		return "", false
	})
}
