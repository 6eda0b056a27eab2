package provider

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

type typed struct{ t string }

func (e typed) Error() string     { return "typed " + e.t }
func (e typed) ErrorType() string { return e.t }

func TestErrorTypeOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{fmt.Errorf("create: %w", ErrInvalid), ErrorTypeInvalid},
		{fmt.Errorf("status x: %w", ErrNotFound), ErrorTypeNotFound},
		{fmt.Errorf("close: %w", ErrUnavailable), ErrorTypeUnavailable},
		{fmt.Errorf("exec: %w", context.DeadlineExceeded), ErrorTypeTimeout},
		{fmt.Errorf("exec: %w", context.Canceled), ErrorTypeInterrupted},
		{errors.New("disk full"), ErrorTypeInternal},
		{fmt.Errorf("create: %w", SandboxError(errors.New("instance start failed"))), ErrorTypeSandbox},
		// Whose fault it is stays with the error that already says so.
		{SandboxError(fmt.Errorf("start: %w", ErrUnavailable)), ErrorTypeUnavailable},
		{SandboxError(fmt.Errorf("start: %w", context.DeadlineExceeded)), ErrorTypeTimeout},
		// A typed error names its own type, even wrapped beside a sentinel.
		{fmt.Errorf("run: %w", typed{ErrorTypeSandbox}), ErrorTypeSandbox},
		{errors.Join(typed{ErrorTypeInvalid}, ErrNotFound), ErrorTypeInvalid},
		// An empty type falls through to the sentinels.
		{errors.Join(typed{""}, ErrNotFound), ErrorTypeNotFound},
	} {
		assert.Equal(t, c.want, ErrorTypeOf(c.err), "%v", c.err)
	}
}
