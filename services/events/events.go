// Package events defines how berthd's services announce what happened.
package events

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"
)

// Envelope is one event as subscribers receive it.
type Envelope struct {
	Timestamp time.Time
	Namespace string
	Topic     string // e.g. "/images/create"
	Event     proto.Message
}

// Publisher sends an event on a topic in the namespace of the context.
type Publisher interface {
	Publish(ctx context.Context, topic string, event proto.Message) error
}

// Subscriber streams events matching any of the filters (over the fields
// topic and namespace) until ctx ends; errs gets at most one error.
type Subscriber interface {
	Subscribe(ctx context.Context, filters ...string) (ch <-chan *Envelope, errs <-chan error)
}
