package plugin

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// An interactive exec crosses the plugin boundary with its terminal size,
// and resizes and signals reach the provider while the command runs, also
// after the caller's stdin has ended.
func TestExecTTYCarriesSizeResizesAndSignals(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake("sb1")
	fake.execFn = func(ctx context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		if req.TTY == nil || req.Control == nil {
			return provider.ExecResult{ExitCode: 2}, nil
		}
		fmt.Fprintf(req.Stdout, "size %dx%d\n", req.TTY.Rows, req.TTY.Cols)
		in, _ := io.ReadAll(req.Stdin)
		fmt.Fprintf(req.Stdout, "typed %q\n", in)
		for c := range req.Control {
			switch {
			case c.Resize != nil:
				fmt.Fprintf(req.Stdout, "resize %dx%d\n", c.Resize.Rows, c.Resize.Cols)
			case c.Signal == "SIGINT":
				fmt.Fprintln(req.Stdout, "interrupted")
				return provider.ExecResult{ExitCode: 130, ExecID: req.ExecID}, nil
			}
		}
		return provider.ExecResult{ExitCode: 1}, nil
	}
	c := dialFake(t, fake)

	control := make(chan provider.Control, 2)
	control <- provider.Control{Resize: &provider.WinSize{Rows: 50, Cols: 132}}
	control <- provider.Control{Signal: "SIGINT"}
	var out strings.Builder
	res, err := c.Exec(ctx, "sb1", provider.ExecRequest{
		Command: "sh", TTY: &provider.WinSize{Rows: 24, Cols: 80}, Control: control,
		Stdin: strings.NewReader("ls\r"), Stdout: &out, ExecID: "t1",
	})
	require.NoError(t, err)
	assert.Equal(t, 130, res.ExitCode)
	assert.Equal(t, "size 24x80\ntyped \"ls\\r\"\nresize 50x132\ninterrupted\n", out.String())
}

// A plain exec has neither: old providers and old clients see nothing new.
func TestExecWithoutTTYHasNoControl(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake("sb1")
	fake.execFn = func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		if req.TTY != nil || req.Control != nil {
			return provider.ExecResult{ExitCode: 3}, nil
		}
		return provider.ExecResult{}, nil
	}
	c := dialFake(t, fake)
	res, err := c.Exec(ctx, "sb1", provider.ExecRequest{Command: "true", Stdin: strings.NewReader("x")})
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
}
