package plugin

import (
	"context"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	pb "github.com/gym-apptainer/gym-apptainer/plugin/proto"
)

// sandboxMethods prefixes the SandboxProvider RPCs: the calls that count
// as work. go-plugin's own streams (broker, stdio) stay open for as long as
// a host is connected and are not calls.
var sandboxMethods = "/" + pb.SandboxProvider_ServiceDesc.ServiceName + "/"

// healthMethods prefixes the health service, which hosts call to check a
// daemon before they use it.
var healthMethods = "/" + grpc_health_v1.Health_ServiceDesc.ServiceName + "/"

// controllerShutdown is go-plugin's "stop serving" RPC, which its
// GRPCClient.Close sends. A daemon serves many hosts: none of them may stop
// it that way (gym-host daemon stop signals it instead).
const controllerShutdown = "/plugin.GRPCController/Shutdown"

// errDaemonClosing refuses calls that arrive once the daemon decided to
// exit; a host that sees it on its health check starts a fresh daemon.
var errDaemonClosing = status.Error(codes.Unavailable, "the plugin daemon is shutting down")

// activity tracks a daemon's connections and calls, to tell when it has
// been idle long enough to exit. A connected host keeps the daemon up even
// between calls: exiting under it would fail its next call.
type activity struct {
	now func() time.Time

	mu      sync.Mutex
	conns   int
	calls   int
	last    time.Time // last time conns or calls changed
	closing bool
}

func newActivity(now func() time.Time) *activity {
	return &activity{now: now, last: now()}
}

func (a *activity) change(f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f()
	a.last = a.now()
}

// begin admits a call; once closing, sandbox calls and health checks are
// refused.
func (a *activity) begin(method string) error {
	if method == controllerShutdown {
		return status.Error(codes.PermissionDenied, "a shared plugin daemon is not stopped by its clients; use gym-host daemon stop")
	}
	isCall := strings.HasPrefix(method, sandboxMethods)
	if !isCall && !strings.HasPrefix(method, healthMethods) {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return errDaemonClosing
	}
	if isCall {
		a.calls++
		a.last = a.now()
	}
	return nil
}

func (a *activity) end(method string) {
	if strings.HasPrefix(method, sandboxMethods) {
		a.change(func() { a.calls-- })
	}
}

// admitRequest admits a service API request as a call: the daemon does
// not idle out while it runs, and the idle time counts from its end.
func (a *activity) admitRequest() (done func(), err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		return nil, errDaemonStopping
	}
	a.calls++
	a.last = a.now()
	return func() { a.change(func() { a.calls-- }) }, nil
}

// idleFor reports whether nothing happened for d, with no host connected
// and no call running; if so the daemon is closing from then on, atomically
// with the decision, so no call can slip in between.
func (a *activity) idleFor(d time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing || a.conns > 0 || a.calls > 0 || a.now().Sub(a.last) < d {
		return false
	}
	a.closing = true
	return true
}

// close refuses new calls from now on.
func (a *activity) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closing = true
}

// running is the number of calls in flight.
func (a *activity) running() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// serverOptions are the gRPC server options that feed the tracker.
func (a *activity) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.StatsHandler(connCounter{a}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := a.begin(info.FullMethod); err != nil {
				return nil, err
			}
			defer a.end(info.FullMethod)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := a.begin(info.FullMethod); err != nil {
				return err
			}
			defer a.end(info.FullMethod)
			return h(srv, ss)
		}),
	}
}

// connCounter counts connections that completed the TLS handshake (gRPC
// reports ConnBegin only then): a stranger who cannot authenticate does
// not keep the daemon alive.
type connCounter struct{ a *activity }

var _ stats.Handler = connCounter{}

func (c connCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c connCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (c connCounter) HandleRPC(context.Context, stats.RPCStats)                         {}

func (c connCounter) HandleConn(_ context.Context, s stats.ConnStats) {
	switch s.(type) {
	case *stats.ConnBegin:
		c.a.change(func() { c.a.conns++ })
	case *stats.ConnEnd:
		c.a.change(func() { c.a.conns-- })
	}
}
