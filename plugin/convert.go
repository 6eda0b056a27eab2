package plugin

import (
	"time"

	pb "github.com/gym-apptainer/gym-apptainer/plugin/proto"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// Pure translation between the contract's Go types and the wire messages.
// Every pair must round-trip; convert_test.go holds them to it.

func specToPB(s provider.Spec) *pb.Spec {
	return &pb.Spec{
		Image:   s.Image,
		Env:     s.Env,
		Workdir: s.Workdir,
		Files:   s.Files,
		Resources: &pb.Resources{
			Cpu:       s.Resources.CPU,
			MemoryMib: s.Resources.MemoryMiB,
			DiskGib:   s.Resources.DiskGiB,
			Gpu:       int32(s.Resources.GPU),
			GpuType:   s.Resources.GPUType,
		},
		Binds:    s.Binds,
		TtlMs:    durationToMS(s.TTL),
		Metadata: s.Metadata,
	}
}

func specFromPB(s *pb.Spec) provider.Spec {
	r := s.GetResources()
	return provider.Spec{
		Image:   s.GetImage(),
		Env:     s.GetEnv(),
		Workdir: s.GetWorkdir(),
		Files:   s.GetFiles(),
		Resources: resources.Resources{
			CPU:       r.GetCpu(),
			MemoryMiB: r.GetMemoryMib(),
			DiskGiB:   r.GetDiskGib(),
			GPU:       int(r.GetGpu()),
			GPUType:   r.GetGpuType(),
		},
		Binds:    s.GetBinds(),
		TTL:      msToDuration(s.GetTtlMs()),
		Metadata: s.GetMetadata(),
	}
}

func statusToPB(s provider.Status) *pb.StatusMsg {
	return &pb.StatusMsg{
		Id:            s.ID,
		State:         string(s.State),
		Reason:        s.Reason,
		Image:         s.Image,
		Instance:      s.Instance,
		Pid:           int64(s.PID),
		CreatedUnixMs: timeToMS(s.Created),
		Placement:     s.Placement,
		Node:          s.Node,
		JobId:         s.JobID,
		TtlMs:         durationToMS(s.TTL),
		Owner:         s.Owner,
		Foreign:       s.Foreign,
		Executor:      s.Executor,
	}
}

func statusFromPB(s *pb.StatusMsg) provider.Status {
	return provider.Status{
		ID:        s.GetId(),
		State:     provider.State(s.GetState()),
		Reason:    s.GetReason(),
		Image:     s.GetImage(),
		Instance:  s.GetInstance(),
		PID:       int(s.GetPid()),
		Created:   msToTime(s.GetCreatedUnixMs()),
		Placement: s.GetPlacement(),
		Node:      s.GetNode(),
		JobID:     s.GetJobId(),
		TTL:       msToDuration(s.GetTtlMs()),
		Owner:     s.GetOwner(),
		Foreign:   s.GetForeign(),
		Executor:  s.GetExecutor(),
	}
}

func skippedToPB(ss []provider.SkippedHandle) []*pb.SkippedHandle {
	out := make([]*pb.SkippedHandle, len(ss))
	for i, s := range ss {
		out[i] = &pb.SkippedHandle{Path: s.Path, Reason: s.Reason}
	}
	return out
}

func skippedFromPB(ss []*pb.SkippedHandle) []provider.SkippedHandle {
	out := make([]provider.SkippedHandle, len(ss))
	for i, s := range ss {
		out[i] = provider.SkippedHandle{Path: s.GetPath(), Reason: s.GetReason()}
	}
	return out
}

func statusesToPB(ss []provider.Status) []*pb.StatusMsg {
	out := make([]*pb.StatusMsg, len(ss))
	for i, s := range ss {
		out[i] = statusToPB(s)
	}
	return out
}

func statusesFromPB(ss []*pb.StatusMsg) []provider.Status {
	out := make([]provider.Status, len(ss))
	for i, s := range ss {
		out[i] = statusFromPB(s)
	}
	return out
}

// execRequestToPB carries everything but the streams; hasStdin says whether
// stdin chunks will follow.
func execRequestToPB(id string, r provider.ExecRequest) *pb.ExecRequest {
	return &pb.ExecRequest{
		Id:         id,
		Command:    r.Command,
		Env:        r.Env,
		Cwd:        r.Cwd,
		User:       r.User,
		TimeoutMs:  timeoutToMS(r.Timeout),
		ExecId:     r.ExecID,
		HasStdin:   r.Stdin != nil,
		Tty:        r.TTY != nil,
		TtyRows:    uint32(ttyRows(r.TTY)),
		TtyCols:    uint32(ttyCols(r.TTY)),
		HasControl: r.Control != nil,
	}
}

func ttyRows(w *provider.WinSize) uint16 {
	if w == nil {
		return 0
	}
	return w.Rows
}

func ttyCols(w *provider.WinSize) uint16 {
	if w == nil {
		return 0
	}
	return w.Cols
}

// clampSize keeps a wire size within a terminal's uint16.
func clampSize(n uint32) uint16 {
	return uint16(min(n, 0xffff))
}

// execRequestFromPB leaves the streams to the caller.
func execRequestFromPB(r *pb.ExecRequest) provider.ExecRequest {
	req := provider.ExecRequest{
		Command: r.GetCommand(),
		Env:     r.GetEnv(),
		Cwd:     r.GetCwd(),
		User:    r.GetUser(),
		Timeout: timeoutFromMS(r.GetTimeoutMs()),
		ExecID:  r.GetExecId(),
	}
	if r.GetTty() {
		req.TTY = &provider.WinSize{Rows: clampSize(r.GetTtyRows()), Cols: clampSize(r.GetTtyCols())}
	}
	return req
}

func execResultToPB(r provider.ExecResult) *pb.ExecResult {
	return &pb.ExecResult{
		ExitCode:  int32(r.ExitCode),
		ErrorType: r.ErrorType,
		Message:   r.Message,
		ExecId:    r.ExecID,
	}
}

func execResultFromPB(r *pb.ExecResult) provider.ExecResult {
	return provider.ExecResult{
		ExitCode:  int(r.GetExitCode()),
		ErrorType: r.GetErrorType(),
		Message:   r.GetMessage(),
		ExecID:    r.GetExecId(),
	}
}

func checksToPB(cs []provider.CheckResult) []*pb.Check {
	out := make([]*pb.Check, len(cs))
	for i, c := range cs {
		out[i] = &pb.Check{Name: c.Name, Level: string(c.Level), Detail: c.Detail, Fix: c.Fix}
	}
	return out
}

func checksFromPB(cs []*pb.Check) []provider.CheckResult {
	out := make([]provider.CheckResult, len(cs))
	for i, c := range cs {
		out[i] = provider.CheckResult{
			Name:   c.GetName(),
			Level:  provider.CheckLevel(c.GetLevel()),
			Detail: c.GetDetail(),
			Fix:    c.GetFix(),
		}
	}
	return out
}

// durationToMS rounds a positive sub-millisecond duration up to 1 ms, so it
// cannot turn into 0 ("not set") on the wire.
func durationToMS(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

func msToDuration(ms int64) time.Duration {
	if ms <= 0 {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// timeoutToMS keeps the three meanings of ExecRequest.Timeout apart: 0 is the
// provider's default, negative is none, positive is at least 1 ms.
func timeoutToMS(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return durationToMS(d)
}

func timeoutFromMS(ms int64) time.Duration {
	if ms < 0 {
		return -1
	}
	return msToDuration(ms)
}

// timeToMS maps the zero time to 0: time.Time{}.UnixMilli() is a large
// negative number that would come back as a real (if ancient) date.
func timeToMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func msToTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
