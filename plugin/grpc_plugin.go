package plugin

import (
	"context"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/gym-apptainer/gym-apptainer/plugin/proto"
)

// SandboxGRPCPlugin is the go-plugin plugin value of the sandbox provider. It
// speaks gRPC only: net/rpc could not carry a context or stream an exec.
type SandboxGRPCPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	// Impl is what the plugin serves; the host leaves it nil.
	Impl Configurable
	// Lane is the plugin's exec lane (lane.go); nil: none.
	Lane *laneServer
}

var _ goplugin.GRPCPlugin = (*SandboxGRPCPlugin)(nil)

// GRPCServer registers the SandboxProvider service, backed by Impl.
func (p *SandboxGRPCPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterSandboxProviderServer(s, &SandboxGRPCServer{Impl: p.Impl, Lane: p.Lane})
	return nil
}

// GRPCClient returns a *SandboxGRPCClient on the plugin's connection.
func (p *SandboxGRPCPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	return &SandboxGRPCClient{client: pb.NewSandboxProviderClient(c)}, nil
}
