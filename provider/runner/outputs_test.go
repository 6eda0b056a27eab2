package runner

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowCounter takes its bytes slowly, so Run's copiers are still busy
// when the command exits with output left in its pipes.
type slowCounter struct{ n int }

func (w *slowCounter) Write(p []byte) (int, error) {
	time.Sleep(200 * time.Microsecond)
	w.n += len(p)
	return len(p), nil
}

// Output written before the command's exit is delivered whole even when
// the copiers fall behind WaitDelay (a loaded machine); os/exec's own
// copiers dropped what the pipe still held.
func TestLocalOutputWrittenBeforeExitIsNeverLost(t *testing.T) {
	const size = 2 << 20
	l := &Local{WaitDelay: time.Microsecond}
	for i := 0; i < 3; i++ {
		var out, errw slowCounter
		c := sh(fmt.Sprintf("head -c %d /dev/zero; head -c %d /dev/zero >&2; exit 42", size, size))
		c.Stdout, c.Stderr = &out, &errw
		res, err := l.Run(context.Background(), c)
		require.NoError(t, err)
		assert.Equal(t, 42, res.ExitCode)
		assert.Equal(t, size, out.n, "stdout bytes")
		assert.Equal(t, size, errw.n, "stderr bytes")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// A writer that fails is reported, and the command still runs to its end:
// its output is read on, so it never blocks on a full pipe.
func TestLocalFailingWriterIsReported(t *testing.T) {
	c := sh("head -c 1000000 /dev/zero; exit 3")
	c.Stdout = failingWriter{}
	res, err := NewLocal(nil).Run(context.Background(), c)
	require.ErrorContains(t, err, "disk full")
	assert.Equal(t, 3, res.ExitCode)
}
