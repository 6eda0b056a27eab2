package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"

	pb "github.com/gym-apptainer/gym-apptainer/plugin/proto"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// SandboxGRPCClient is the host's side of the plugin connection: a
// Configurable whose calls are RPCs. Errors keep the plugin's text and
// wrap provider.ErrNotFound, provider.ErrInvalid, ErrNotConfigured, the
// context errors or ErrPluginGone, so errors.Is works across the boundary.
// Exec is in client_exec.go.
type SandboxGRPCClient struct {
	client pb.SandboxProviderClient
	// lane, when the plugin offers one, carries the execs without stdin,
	// terminal or controls (lane.go); set once by openLane, before any exec.
	lane *laneClient
}

// openLane asks the plugin for its exec lane. A plugin without one (an
// older build, daemon mode) or a failed ask leaves every exec on gRPC.
func (c *SandboxGRPCClient) openLane(ctx context.Context) error {
	resp, err := c.client.ExecLane(ctx, &pb.ExecLaneRequest{})
	if err != nil {
		return fromStatus(ctx, err)
	}
	if resp.GetName() == "" || len(resp.GetToken()) != laneTokenLen {
		return nil
	}
	c.lane = &laneClient{name: resp.GetName(), token: resp.GetToken()}
	return nil
}

// closeLane drops the lane's idle connections (the plugin is going away).
func (c *SandboxGRPCClient) closeLane() {
	if c.lane != nil {
		c.lane.close()
	}
}

var _ Configurable = (*SandboxGRPCClient)(nil)

// Configure sends the configuration; the plugin builds its provider.
func (c *SandboxGRPCClient) Configure(ctx context.Context, cfgPath string, cfgYAML []byte, overrides map[string]string) (string, error) {
	resp, err := c.client.Configure(ctx, &pb.ConfigureRequest{
		ConfigPath: cfgPath,
		ConfigYaml: cfgYAML,
		Overrides:  overrides,
	})
	if err != nil {
		return "", fromStatus(ctx, err)
	}
	return resp.GetProviderVersion(), nil
}

// Create starts a sandbox.
func (c *SandboxGRPCClient) Create(ctx context.Context, spec provider.Spec) (provider.Status, error) {
	resp, err := c.client.Create(ctx, &pb.CreateRequest{Spec: specToPB(spec)})
	if err != nil {
		return provider.Status{}, fromStatus(ctx, err)
	}
	return statusFromPB(resp), nil
}

// KillExec kills an exec's processes.
func (c *SandboxGRPCClient) KillExec(ctx context.Context, id, execID string) error {
	_, err := c.client.KillExec(ctx, &pb.KillExecRequest{Id: id, ExecId: execID})
	return fromStatus(ctx, err)
}

// Upload copies a host file into a sandbox.
func (c *SandboxGRPCClient) Upload(ctx context.Context, id, hostPath, remotePath string) error {
	_, err := c.client.Upload(ctx, &pb.UploadRequest{Id: id, HostPath: hostPath, RemotePath: remotePath})
	return fromStatus(ctx, err)
}

// Download copies a sandbox file to the host.
func (c *SandboxGRPCClient) Download(ctx context.Context, id, remotePath, hostPath string) error {
	_, err := c.client.Download(ctx, &pb.DownloadRequest{Id: id, RemotePath: remotePath, HostPath: hostPath})
	return fromStatus(ctx, err)
}

// Status reports sandboxes.
func (c *SandboxGRPCClient) Status(ctx context.Context, ids []string) ([]provider.Status, error) {
	resp, err := c.client.Status(ctx, &pb.StatusRequest{Ids: ids})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	return statusesFromPB(resp.GetStatuses()), nil
}

// List reports every known sandbox.
func (c *SandboxGRPCClient) List(ctx context.Context) ([]provider.Status, error) {
	resp, err := c.client.List(ctx, &pb.ListRequest{})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	sts := statusesFromPB(resp.GetStatuses())
	if sk := resp.GetSkipped(); len(sk) > 0 {
		return sts, &provider.SkippedError{Skipped: skippedFromPB(sk)}
	}
	return sts, nil
}

// Close ends a sandbox.
func (c *SandboxGRPCClient) Close(ctx context.Context, id string) error {
	_, err := c.client.Close(ctx, &pb.CloseRequest{Id: id})
	return fromStatus(ctx, err)
}

// CloseAll ends every sandbox (of every owner with opts.AllOwners).
func (c *SandboxGRPCClient) CloseAll(ctx context.Context, opts provider.CloseAllOptions) ([]string, error) {
	resp, err := c.client.CloseAll(ctx, &pb.CloseAllRequest{AllOwners: opts.AllOwners})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	return resp.GetIds(), nil
}

// Pull fills the image cache, calling progress (if set) for each line the
// plugin reports, as it arrives.
func (c *SandboxGRPCClient) Pull(ctx context.Context, image string, progress provider.PullProgress) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.client.Pull(ctx, &pb.PullRequest{Image: image})
	if err != nil {
		return "", fromStatus(ctx, err)
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("pull %s: the plugin ended the stream without a path (a bug in the plugin)", image)
		}
		if err != nil {
			return "", fromStatus(ctx, err)
		}
		switch m := msg.GetMsg().(type) {
		case *pb.PullMsg_Progress:
			if progress != nil {
				progress(m.Progress)
			}
		case *pb.PullMsg_Path:
			return m.Path, nil
		}
	}
}

// Doctor runs the node checks.
func (c *SandboxGRPCClient) Doctor(ctx context.Context) ([]provider.CheckResult, error) {
	resp, err := c.client.Doctor(ctx, &pb.DoctorRequest{})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	return checksFromPB(resp.GetChecks()), nil
}
