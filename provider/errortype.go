package provider

import (
	"context"
	"errors"
)

// TypedError is an error that knows its error type: a caller's own error
// kinds (a usage error, an exec's runtime failure) join the mapping of
// ErrorTypeOf without it knowing them.
type TypedError interface {
	error
	ErrorType() string
}

// ErrorTypeOf is the one mapping from a failed call to its stable error
// type, the word a program reads instead of matching the message: gym-host
// --json prints it and the local service answers with it. nil has none ("").
func ErrorTypeOf(err error) string {
	var te TypedError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &te) && te.ErrorType() != "":
		return te.ErrorType()
	case errors.Is(err, ErrInvalid):
		return ErrorTypeInvalid
	case errors.Is(err, ErrUnavailable):
		return ErrorTypeUnavailable
	case errors.Is(err, ErrNotFound):
		return ErrorTypeNotFound
	case errors.Is(err, ErrSandbox):
		return ErrorTypeSandbox
	case errors.Is(err, context.DeadlineExceeded):
		return ErrorTypeTimeout
	case errors.Is(err, context.Canceled):
		return ErrorTypeInterrupted
	}
	return ErrorTypeInternal
}
