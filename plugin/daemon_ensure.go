package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
)

// EnsureDaemon starts the daemon of cfg's key, or finds it running, exactly
// as a daemon-mode Host would (cfg.Daemon is its idle timeout, NeverIdle
// for none; a daemon found running keeps its own), and returns its status:
// gym-host serve hands its APISocket to programs that use the service API.
// The connection it made is closed again, so the daemon's idle time runs
// from the return.
func EnsureDaemon(ctx context.Context, cfg HostConfig) (*DaemonStatus, error) {
	if cfg.Daemon <= 0 {
		return nil, errors.New("EnsureDaemon needs an idle timeout (HostConfig.Daemon)")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	path, err := FindPlugin(cfg.PluginPath)
	if err != nil {
		return nil, err
	}
	h := &Host{cfg: cfg, logger: cfg.Logger}
	p, err := h.launchDaemon(ctx, path)
	if err != nil {
		return nil, err
	}
	defer p.release()
	files, _, err := h.daemonFiles(path)
	if err != nil {
		return nil, err
	}
	rec, err := readRecord(files.record())
	switch {
	case err != nil:
		return nil, err
	case rec == nil || rec.PID != p.pid:
		return nil, fmt.Errorf("the plugin daemon (pid %d) went away as it was found; run the command again", p.pid)
	case rec.APISocket == "":
		return nil, fmt.Errorf("the plugin daemon (pid %d) serves no API socket (an older build?): stop it with gym-host daemon stop and run the command again", p.pid)
	}
	return &DaemonStatus{DaemonRecord: *rec, Running: true, path: files.record()}, nil
}

// WaitDaemon returns once st's daemon has exited, or with ctx's error.
func WaitDaemon(ctx context.Context, st DaemonStatus) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for daemonAlive(st.PID, st.Plugin) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
