// Package errdefs defines the kinds of error that berth's services return and
// carries them across process boundaries as gRPC status codes, so that a
// client can ask IsNotFound(err) whichever process the error came from.
package errdefs

import (
	"context"
	"errors"
	"fmt"
)

// The kinds of error. Wrap them with fmt.Errorf("...: %w", ErrNotFound) to add
// what was asked and what to do.
var (
	ErrUnknown            = errors.New("unknown")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrNotImplemented     = errors.New("not implemented")
	ErrAborted            = errors.New("aborted")
	ErrPermissionDenied   = errors.New("permission denied")
	ErrResourceExhausted  = errors.New("resource exhausted")
)

// IsInvalidArgument reports whether err is, or wraps, ErrInvalidArgument.
func IsInvalidArgument(err error) bool { return errors.Is(err, ErrInvalidArgument) }

// IsNotFound reports whether err is, or wraps, ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsAlreadyExists reports whether err is, or wraps, ErrAlreadyExists.
func IsAlreadyExists(err error) bool { return errors.Is(err, ErrAlreadyExists) }

// IsFailedPrecondition reports whether err is, or wraps, ErrFailedPrecondition.
func IsFailedPrecondition(err error) bool { return errors.Is(err, ErrFailedPrecondition) }

// IsUnavailable reports whether err is, or wraps, ErrUnavailable.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// IsNotImplemented reports whether err is, or wraps, ErrNotImplemented.
func IsNotImplemented(err error) bool { return errors.Is(err, ErrNotImplemented) }

// IsAborted reports whether err is, or wraps, ErrAborted.
func IsAborted(err error) bool { return errors.Is(err, ErrAborted) }

// IsPermissionDenied reports whether err is, or wraps, ErrPermissionDenied.
func IsPermissionDenied(err error) bool { return errors.Is(err, ErrPermissionDenied) }

// IsResourceExhausted reports whether err is, or wraps, ErrResourceExhausted.
func IsResourceExhausted(err error) bool { return errors.Is(err, ErrResourceExhausted) }

// IsCanceled reports whether err is, or wraps, context.Canceled.
func IsCanceled(err error) bool { return errors.Is(err, context.Canceled) }

// IsDeadlineExceeded reports whether err is, or wraps, context.DeadlineExceeded.
func IsDeadlineExceeded(err error) bool { return errors.Is(err, context.DeadlineExceeded) }

// kindError keeps a message received from another process while making the
// error match its kind with errors.Is.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// withKind returns an error whose text is msg and which matches kind.
func withKind(kind error, msg string) error {
	if msg == "" {
		msg = kind.Error()
	}
	return &kindError{kind: kind, msg: msg}
}

// Errorf formats an error of the given kind.
func Errorf(kind error, format string, args ...any) error {
	return withKind(kind, fmt.Sprintf(format, args...))
}
