package plugin

import (
	"context"
	"errors"
	"sync"

	pb "github.com/gym-apptainer/gym-apptainer/plugin/proto"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// SandboxGRPCServer serves the SandboxProvider service on the plugin side by
// translating each RPC into a call on Impl. Exec is in server_exec.go.
type SandboxGRPCServer struct {
	pb.UnimplementedSandboxProviderServer
	Impl Configurable
	// Lane, when set, is the exec lane ExecLane hands out (lane.go).
	Lane *laneServer
}

var _ pb.SandboxProviderServer = (*SandboxGRPCServer)(nil)

// ExecLane opens the exec lane and says how to reach it; without one (a
// daemon, or a lane that could not open) the answer is empty and the host
// stays on gRPC.
func (s *SandboxGRPCServer) ExecLane(context.Context, *pb.ExecLaneRequest) (*pb.ExecLaneResponse, error) {
	if s.Lane == nil {
		return &pb.ExecLaneResponse{}, nil
	}
	name, token, err := s.Lane.open(s)
	if err != nil {
		s.Lane.logger.Warn("no exec lane; execs go through gRPC", "error", err)
		return &pb.ExecLaneResponse{}, nil
	}
	return &pb.ExecLaneResponse{Name: name, Token: token}, nil
}

// Configure builds the provider (see Configurable.Configure).
func (s *SandboxGRPCServer) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	version, err := s.Impl.Configure(ctx, req.GetConfigPath(), req.GetConfigYaml(), req.GetOverrides())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ConfigureResponse{ProviderVersion: version}, nil
}

// Create starts a sandbox.
func (s *SandboxGRPCServer) Create(ctx context.Context, req *pb.CreateRequest) (*pb.StatusMsg, error) {
	st, err := s.Impl.Create(ctx, specFromPB(req.GetSpec()))
	if err != nil {
		return nil, toStatus(err)
	}
	return statusToPB(st), nil
}

// KillExec kills an exec's processes.
func (s *SandboxGRPCServer) KillExec(ctx context.Context, req *pb.KillExecRequest) (*pb.KillExecResponse, error) {
	if err := s.Impl.KillExec(ctx, req.GetId(), req.GetExecId()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.KillExecResponse{}, nil
}

// Upload copies a host file into a sandbox.
func (s *SandboxGRPCServer) Upload(ctx context.Context, req *pb.UploadRequest) (*pb.UploadResponse, error) {
	if err := s.Impl.Upload(ctx, req.GetId(), req.GetHostPath(), req.GetRemotePath()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.UploadResponse{}, nil
}

// Download copies a sandbox file to the host.
func (s *SandboxGRPCServer) Download(ctx context.Context, req *pb.DownloadRequest) (*pb.DownloadResponse, error) {
	if err := s.Impl.Download(ctx, req.GetId(), req.GetRemotePath(), req.GetHostPath()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.DownloadResponse{}, nil
}

// Status reports sandboxes.
func (s *SandboxGRPCServer) Status(ctx context.Context, req *pb.StatusRequest) (*pb.StatusResponse, error) {
	sts, err := s.Impl.Status(ctx, req.GetIds())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.StatusResponse{Statuses: statusesToPB(sts)}, nil
}

// List reports every known sandbox.
func (s *SandboxGRPCServer) List(ctx context.Context, _ *pb.ListRequest) (*pb.ListResponse, error) {
	sts, err := s.Impl.List(ctx)
	// Unreadable handles alone do not fail the call: they travel beside
	// the statuses, so that one bad file does not hide every sandbox.
	var sk *provider.SkippedError
	if err != nil && (!errors.As(err, &sk) || error(sk) != err) {
		return nil, toStatus(err)
	}
	resp := &pb.ListResponse{Statuses: statusesToPB(sts)}
	if sk != nil {
		resp.Skipped = skippedToPB(sk.Skipped)
	}
	return resp, nil
}

// Close ends a sandbox.
func (s *SandboxGRPCServer) Close(ctx context.Context, req *pb.CloseRequest) (*pb.CloseResponse, error) {
	if err := s.Impl.Close(ctx, req.GetId()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.CloseResponse{}, nil
}

// CloseAll ends every sandbox.
func (s *SandboxGRPCServer) CloseAll(ctx context.Context, req *pb.CloseAllRequest) (*pb.CloseAllResponse, error) {
	ids, err := s.Impl.CloseAll(ctx, provider.CloseAllOptions{AllOwners: req.GetAllOwners()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CloseAllResponse{Ids: ids}, nil
}

// Pull streams progress lines, then the cached path. A progress line that
// cannot be sent (the host went away) is dropped: the pull's own context
// is cancelled by then and ends the pull.
func (s *SandboxGRPCServer) Pull(req *pb.PullRequest, stream pb.SandboxProvider_PullServer) error {
	// The provider may report from several goroutines, or late; a gRPC
	// stream takes one sender at a time and none after the handler returned.
	var mu sync.Mutex
	done := false
	progress := func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			_ = stream.Send(&pb.PullMsg{Msg: &pb.PullMsg_Progress{Progress: msg}})
		}
	}
	path, err := s.Impl.Pull(stream.Context(), req.GetImage(), progress)
	mu.Lock()
	done = true
	mu.Unlock()
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&pb.PullMsg{Msg: &pb.PullMsg_Path{Path: path}})
}

// Doctor runs the node checks.
func (s *SandboxGRPCServer) Doctor(ctx context.Context, _ *pb.DoctorRequest) (*pb.DoctorResponse, error) {
	checks, err := s.Impl.Doctor(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DoctorResponse{Checks: checksToPB(checks)}, nil
}
