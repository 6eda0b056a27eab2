package plugin

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// BenchmarkExecRoundTrip is the host-plugin hop alone: an exec the fake
// plugin answers at once, through the exec lane and through gRPC (a call
// with stdin takes gRPC). gap is the pause before each call, which lets
// both processes go idle as between a harness's commands; us/call is the
// time of the call alone, and lane/grpc their ratio in the same run.
func BenchmarkExecRoundTrip(b *testing.B) {
	b.Setenv(helperEnv, "1")
	b.Setenv("GORACE", "atexit_sleep_ms=0")
	h := NewHost(HostConfig{PluginPath: os.Args[0], Logger: hclog.NewNullLogger()})
	defer h.Shutdown()
	ctx := context.Background()
	call := func(b *testing.B, grpc bool) time.Duration {
		req := provider.ExecRequest{Command: "exit 3"}
		if grpc {
			req.Stdin = strings.NewReader("")
		}
		t := time.Now()
		res, err := h.Exec(ctx, "sb1", req)
		d := time.Since(t)
		if err != nil || res.ExitCode != 3 {
			b.Fatalf("exec: %v exit %d", err, res.ExitCode)
		}
		return d
	}
	call(b, false)
	call(b, true)
	for _, gap := range []time.Duration{0, 20 * time.Millisecond} {
		b.Run("gap="+gap.String(), func(b *testing.B) {
			var lane, grpc time.Duration
			for i := 0; i < b.N; i++ {
				time.Sleep(gap)
				lane += call(b, false)
				time.Sleep(gap)
				grpc += call(b, true)
			}
			b.ReportMetric(float64(lane.Microseconds())/float64(b.N), "lane-us/call")
			b.ReportMetric(float64(grpc.Microseconds())/float64(b.N), "grpc-us/call")
			b.ReportMetric(float64(lane)/float64(grpc), "lane/grpc")
		})
	}
}
