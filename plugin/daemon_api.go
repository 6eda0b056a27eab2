package plugin

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/service"
)

// The daemon's second listener: the local service API (package service)
// on api.sock in the daemon's private socket directory, over the same
// provider its gRPC clients use. One server process, two doors: gym-host
// comes in through go-plugin's socket, other programs through this one.

// APISocketName is the service socket's name in a daemon's socket
// directory; the record gives its full path (DaemonRecord.APISocket).
const APISocketName = "api.sock"

// errDaemonStopping refuses API requests that arrive once the daemon
// decided to exit: the caller starts a fresh daemon (gym-host serve).
var errDaemonStopping = fmt.Errorf("the plugin daemon is shutting down; run gym-host serve again to start a new one: %w", provider.ErrUnavailable)

// apiServer is the daemon's service API listener.
type apiServer struct {
	path string
	svc  *service.Service
	srv  *http.Server
	done chan struct{}
}

// startAPI opens the service socket (0600, in the 0700 socket directory)
// and serves impl on it.
func (d *daemon) startAPI(impl provider.Provider) (*apiServer, error) {
	if d.sockDir == "" {
		return nil, errors.New("the daemon has no socket directory for its API socket")
	}
	path := filepath.Join(d.sockDir, APISocketName)
	ln, err := service.ListenUnix(path)
	if err != nil {
		return nil, err
	}
	svc := service.New(service.Options{
		Provider: impl,
		Version:  Version,
		PID:      d.pid,
		Admit:    d.act.admitRequest,
		Logger:   d.logger.Named("api"),
	})
	a := &apiServer{path: path, svc: svc, srv: svc.HTTPServer(), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.logger.Error("the API server stopped", "error", err)
		}
	}()
	return a, nil
}

// stop closes the listener and every connection, PTY sessions' included:
// requests still running (the drain is over) have their calls cancelled,
// which kills their execs.
func (a *apiServer) stop() {
	if a == nil {
		return
	}
	_ = a.srv.Close()
	a.svc.CloseSessions()
	<-a.done
}
