package plugin

import goplugin "github.com/hashicorp/go-plugin"

// ProtocolVersion is the plugin protocol's version, checked by go-plugin's
// handshake. Raise it on every incompatible change to proto/sandbox.proto
// (adding fields or RPCs is compatible; renumbering, removing or changing the
// meaning of one is not), and keep the old version in VersionedPlugins while
// a host may still meet an old plugin.
//
// Version history:
//
//	1: gRPC SandboxProvider (gymapptainer.v1): Configure, Create, Exec (bidi
//	   stream), KillExec, Upload, Download, Status, List, Close, CloseAll,
//	   Pull (server stream), Doctor.
const ProtocolVersion = 1

// Handshake is shared by host and plugin. The magic cookie is a UX feature,
// not a security one: it lets the plugin tell that a person started it by
// hand, and say so, instead of printing a handshake line.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "GYM_APPTAINER_PLUGIN",
	MagicCookieValue: "1358e5d6e6b74e5307bfd6b8d3914edb5ca0f9dacb1042d5cdde31e9453f628a",
}

// PluginName is the name the sandbox plugin is dispensed under.
const PluginName = "sandbox"

// PluginMap is the host's plugin set: the plugin value has no Impl, as the
// host only ever uses its client half.
var PluginMap = goplugin.PluginSet{
	PluginName: &SandboxGRPCPlugin{},
}

// VersionedPlugins is the host's plugin set per protocol version; go-plugin
// picks the highest version both sides speak.
var VersionedPlugins = map[int]goplugin.PluginSet{
	ProtocolVersion: PluginMap,
}

// servedPlugins is the plugin's own set: the same plugin, holding impl
// and its exec lane (nil: none).
func servedPlugins(impl Configurable, lane *laneServer) map[int]goplugin.PluginSet {
	return map[int]goplugin.PluginSet{
		ProtocolVersion: {PluginName: &SandboxGRPCPlugin{Impl: impl, Lane: lane}},
	}
}
