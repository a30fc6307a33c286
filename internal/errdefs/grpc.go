package errdefs

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ToGRPC turns err into a gRPC status error whose code matches its kind. A
// service calls it on every error it returns.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isKind(err) {
		return err
	}
	return status.Error(Code(err), err.Error())
}

// FromGRPC turns a gRPC status error back into an error of the matching kind,
// keeping its message. A client calls it on every error it receives.
func FromGRPC(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var kind error
	switch st.Code() {
	case codes.InvalidArgument:
		kind = ErrInvalidArgument
	case codes.NotFound:
		kind = ErrNotFound
	case codes.AlreadyExists:
		kind = ErrAlreadyExists
	case codes.FailedPrecondition, codes.OutOfRange:
		kind = ErrFailedPrecondition
	case codes.Unavailable:
		kind = ErrUnavailable
	case codes.Unimplemented:
		kind = ErrNotImplemented
	case codes.Aborted:
		kind = ErrAborted
	case codes.PermissionDenied, codes.Unauthenticated:
		kind = ErrPermissionDenied
	case codes.ResourceExhausted:
		kind = ErrResourceExhausted
	case codes.Canceled:
		kind = context.Canceled
	case codes.DeadlineExceeded:
		kind = context.DeadlineExceeded
	default:
		kind = ErrUnknown
	}
	return withKind(kind, st.Message())
}

// Code returns the gRPC code for err's kind.
func Code(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case IsInvalidArgument(err):
		return codes.InvalidArgument
	case IsNotFound(err):
		return codes.NotFound
	case IsAlreadyExists(err):
		return codes.AlreadyExists
	case IsFailedPrecondition(err):
		return codes.FailedPrecondition
	case IsUnavailable(err):
		return codes.Unavailable
	case IsNotImplemented(err):
		return codes.Unimplemented
	case IsAborted(err):
		return codes.Aborted
	case IsPermissionDenied(err):
		return codes.PermissionDenied
	case IsResourceExhausted(err):
		return codes.ResourceExhausted
	case IsCanceled(err):
		return codes.Canceled
	case IsDeadlineExceeded(err):
		return codes.DeadlineExceeded
	}
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	return codes.Unknown
}

func isKind(err error) bool {
	for _, k := range []error{ErrUnknown, ErrInvalidArgument, ErrNotFound, ErrAlreadyExists,
		ErrFailedPrecondition, ErrUnavailable, ErrNotImplemented, ErrAborted,
		ErrPermissionDenied, ErrResourceExhausted, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}
