package errdefs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRoundTrip(t *testing.T) {
	for _, kind := range []error{ErrInvalidArgument, ErrNotFound, ErrAlreadyExists,
		ErrFailedPrecondition, ErrUnavailable, ErrNotImplemented, ErrAborted,
		ErrPermissionDenied, ErrResourceExhausted, context.Canceled, context.DeadlineExceeded} {
		orig := fmt.Errorf("image %q: %w", "busybox", kind)
		back := FromGRPC(ToGRPC(orig))
		if !errorsIs(back, kind) {
			t.Errorf("%v: kind lost across gRPC: %v", kind, back)
		}
		if back.Error() != orig.Error() {
			t.Errorf("message changed: %q != %q", back.Error(), orig.Error())
		}
	}
}

func TestUnknownStays(t *testing.T) {
	err := status.Error(codes.Internal, "boom")
	if Code(ToGRPC(err)) != codes.Internal {
		t.Fatalf("status code of a plain status error changed")
	}
	if back := FromGRPC(err); !errorsIs(back, ErrUnknown) || back.Error() != "boom" {
		t.Fatalf("unexpected %v", back)
	}
}

func errorsIs(err, kind error) bool { return errors.Is(err, kind) }
