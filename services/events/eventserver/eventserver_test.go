package eventserver

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/grpctest"
	"github.com/berth-engine/berth/internal/namespaces"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	"github.com/berth-engine/berth/services/events/exchange"
)

func dial(t *testing.T) eventsv1.EventsClient {
	ex := exchange.New()
	t.Cleanup(ex.Close)
	return eventsv1.NewEventsClient(grpctest.Dial(t, func(s *grpc.Server) { Register(s, ex) }))
}

func TestPublishSubscribe(t *testing.T) {
	c := dial(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := c.Subscribe(ctx, &eventsv1.SubscribeRequest{Filters: []string{`topic~="^/images/"`}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatalf("waiting for the subscription: %v", err)
	}

	nsCtx := namespaces.WithNamespace(ctx, "team-a")
	skipped, _ := anypb.New(&eventsv1.ContentDelete{Digest: "sha256:abc"})
	if _, err := c.Publish(nsCtx, &eventsv1.PublishRequest{Topic: "/content/delete", Event: skipped}); err != nil {
		t.Fatal(err)
	}
	want := &eventsv1.ImageCreate{Name: "docker.io/library/busybox:latest", Labels: map[string]string{"a": "b"}}
	a, _ := anypb.New(want)
	if _, err := c.Publish(nsCtx, &eventsv1.PublishRequest{Topic: "/images/create", Event: a}); err != nil {
		t.Fatal(err)
	}

	env, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if env.GetNamespace() != "team-a" || env.GetTopic() != "/images/create" || env.GetTimestamp() == nil {
		t.Fatalf("unexpected envelope %v", env)
	}
	got, err := env.GetEvent().UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("event changed on the way: %v != %v", got, want)
	}
}

func TestErrors(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	a, _ := anypb.New(&eventsv1.ImageDelete{Name: "x"})

	_, err := c.Publish(ctx, &eventsv1.PublishRequest{Topic: "/images/delete", Event: a})
	if err := errdefs.FromGRPC(err); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("publish without namespace: got %v, want failed precondition", err)
	}
	nsCtx := namespaces.WithNamespace(ctx, "default")
	_, err = c.Publish(nsCtx, &eventsv1.PublishRequest{Topic: "images", Event: a})
	if err := errdefs.FromGRPC(err); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad topic: got %v, want invalid argument", err)
	}
	_, err = c.Publish(nsCtx, &eventsv1.PublishRequest{Topic: "/images/delete"})
	if err := errdefs.FromGRPC(err); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no event: got %v, want invalid argument", err)
	}

	stream, err := c.Subscribe(ctx, &eventsv1.SubscribeRequest{Filters: []string{`topic~=/(/`}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if err := errdefs.FromGRPC(err); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad filter: got %v, want invalid argument", err)
	}
}
