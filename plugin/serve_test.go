package plugin

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLogLevel(t *testing.T) {
	tests := map[string]hclog.Level{
		"":        hclog.Info,
		"debug":   hclog.Debug,
		"TRACE":   hclog.Trace,
		" warn ":  hclog.Warn,
		"error":   hclog.Error,
		"verbose": hclog.Info,
	}
	for in, want := range tests {
		assert.Equal(t, want, logLevel(in), "%q", in)
	}
}

func TestServeConfigLogsJSONAtEnvLevel(t *testing.T) {
	var buf bytes.Buffer
	env := map[string]string{LogLevelEnv: "warn"}
	cfg, _ := serveConfig(helperFactory, func(k string) string { return env[k] }, &buf, nil)
	assert.Equal(t, Handshake, cfg.HandshakeConfig)
	require.Contains(t, cfg.VersionedPlugins, ProtocolVersion)
	p, ok := cfg.VersionedPlugins[ProtocolVersion][PluginName].(*SandboxGRPCPlugin)
	require.True(t, ok)
	assert.NotNil(t, p.Impl)

	cfg.Logger.Info("hidden")
	cfg.Logger.Warn("shown", "k", "v")
	assert.NotContains(t, buf.String(), "hidden")
	assert.Contains(t, buf.String(), `"@message":"shown"`)
}

func TestPluginRunByHandSaysToRunGymHost(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	// A plugin binary, but no magic cookie.
	cmd.Env = append(os.Environ(), helperEnv+"=1", "GORACE=atexit_sleep_ms=0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, 1, exitErr.ExitCode())
	assert.Empty(t, stdout.String(), "no handshake line for a person")
	assert.Equal(t, notStartedByHost+"\n", stderr.String())
}
