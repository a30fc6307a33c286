// Package eventserver serves the berth.events.v1.Events gRPC API from an
// in-process exchange.
package eventserver

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/protoconv"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	"github.com/berth-engine/berth/services/events"
)

// Exchange is what the service needs: somewhere to publish and subscribe.
type Exchange interface {
	events.Publisher
	events.Subscriber
}

type service struct {
	eventsv1.UnimplementedEventsServer
	ex Exchange
}

// New returns the Events service backed by ex.
func New(ex Exchange) eventsv1.EventsServer {
	return &service{ex: ex}
}

// Register serves the Events service of ex on s.
func Register(s *grpc.Server, ex Exchange) {
	eventsv1.RegisterEventsServer(s, New(ex))
}

// Publish publishes the event in the namespace of the request. The event
// stays an Any, so clients may publish types berthd does not know.
func (s *service) Publish(ctx context.Context, req *eventsv1.PublishRequest) (*emptypb.Empty, error) {
	if req.GetEvent() == nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("publishing on %q: the request has no event: %w", req.GetTopic(), errdefs.ErrInvalidArgument))
	}
	if err := s.ex.Publish(ctx, req.GetTopic(), req.GetEvent()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Subscribe streams the matching events until the client goes, the
// subscription falls behind, or berthd shuts down. Response headers are sent
// as soon as the subscription is in place.
func (s *service) Subscribe(req *eventsv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventsv1.Envelope]) error {
	ch, errs := s.ex.Subscribe(stream.Context(), req.GetFilters()...)
	// Headers tell the client that the subscription is in place, so that it
	// can wait for them before causing the events it wants to see.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for env := range ch {
		out, err := envelopeToProto(env)
		if err != nil {
			return errdefs.ToGRPC(err)
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
	// ch is closed after errs got the reason, if any.
	return errdefs.ToGRPC(<-errs)
}

func envelopeToProto(env *events.Envelope) (*eventsv1.Envelope, error) {
	a, ok := env.Event.(*anypb.Any)
	if !ok {
		var err error
		if a, err = anypb.New(env.Event); err != nil {
			return nil, fmt.Errorf("marshalling event on %q: %w", env.Topic, err)
		}
	}
	return &eventsv1.Envelope{
		Timestamp: protoconv.TimestampToProto(env.Timestamp),
		Namespace: env.Namespace,
		Topic:     env.Topic,
		Event:     a,
	}, nil
}
