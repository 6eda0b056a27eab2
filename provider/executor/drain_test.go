package executor

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowWriter counts what it is given, slowly, so the executor's pumps
// block on the connection while the command exits with output still in
// its pipes.
type slowWriter struct{ n int }

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(200 * time.Microsecond)
	w.n += len(p)
	return len(p), nil
}

// Output the command wrote before it exited is delivered whole, however
// late the executor gets to read it: a loaded node can stall a pump past
// WaitDelay (here 1µs), and the bytes still in the pipe then were lost,
// the start marker among them (a healthy exec reported as a sandbox
// failure).
func TestOutputWrittenBeforeExitIsNeverLost(t *testing.T) {
	s := startServer(t, "GYM_EXECUTOR_TEST_WAIT_DELAY=1us")
	const size = 4 << 20
	for i := 0; i < 3; i++ {
		var out, errw slowWriter
		res, err := s.c.Run(context.Background(), Request{
			Argv:   sh(`head -c ` + itoa(size) + ` /dev/zero; head -c ` + itoa(size) + ` /dev/zero >&2; exit 42`),
			Stdout: &out, Stderr: &errw})
		require.NoError(t, err)
		assert.Equal(t, 42, res.ExitCode)
		assert.Equal(t, size, out.n, "stdout bytes")
		assert.Equal(t, size, errw.n, "stderr bytes")
	}
}
