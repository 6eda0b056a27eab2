package plugin

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
)

// A per-call plugin must not outlive its host, nor leave the host's
// commands running when the host dies without cleaning up (SIGKILL, OOM).
// go-plugin does not notice a dead host: the plugin keeps serving its
// socket. So the host starts the plugin with Pdeathsig SIGTERM
// (pluginCmd), and the plugin also polls its parent pid, in case the
// signal never comes (another host, or the forking thread gone). Either
// way it stops its gRPC server, which cancels every call in flight (an
// exec's cancellation kills all of its processes), waits for those calls
// to finish, and exits.

const (
	// parentPoll is how often a per-call plugin checks that its host lives.
	parentPoll = 500 * time.Millisecond
	// callDrainTimeout bounds the wait for cancelled calls: reaping an
	// exec takes at most 30 s (provider/apptainer reapTimeout).
	callDrainTimeout = 40 * time.Second
)

// callGroup counts the sandbox calls in flight.
type callGroup struct{ wg sync.WaitGroup }

// serverOptions are interceptors that count sandbox calls (not go-plugin's
// own streams, which stay open as long as a host is connected).
func (c *callGroup) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if strings.HasPrefix(info.FullMethod, sandboxMethods) {
				c.wg.Add(1)
				defer c.wg.Done()
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if strings.HasPrefix(info.FullMethod, sandboxMethods) {
				c.wg.Add(1)
				defer c.wg.Done()
			}
			return h(srv, ss)
		}),
	}
}

// wait waits for the calls in flight, at most timeout; it reports whether
// they all ended.
func (c *callGroup) wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// watchCaller calls gone once, with the reason, when this process gets
// SIGTERM or its parent (ppid, read at start) is no longer its parent.
// SIGTERM stays caught until stop: Pdeathsig fires again each time the
// dying host's next thread exits (the kernel hands the plugin from thread
// to thread), and a second, uncaught SIGTERM would kill the plugin before
// it has killed its commands.
func watchCaller(ppid int, gone func(reason string)) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	quit := make(chan struct{})
	var once sync.Once
	go func() {
		defer signal.Stop(sigs)
		tick := time.NewTicker(parentPoll)
		defer tick.Stop()
		notify := func(reason string) {
			once.Do(func() { gone(reason) })
			tick.Stop()
		}
		for {
			select {
			case <-quit:
				return
			case s := <-sigs:
				notify("signal " + s.String())
			case <-tick.C:
				if os.Getppid() != ppid {
					notify("the host process is gone")
				}
			}
		}
	}()
	return func() { close(quit) }
}
