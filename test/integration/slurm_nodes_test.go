package integration

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/slurm"
)

// jobNodes is job's node list as squeue shows it, expanded (empty while it
// pends).
func jobNodes(t *testing.T, job string) []string {
	t.Helper()
	out, err := commandOutput("squeue", "-h", "-t", "all", "-j", job, "-o", "%N")
	require.NoError(t, err, "squeue -j %s", job)
	nodes, err := slurm.ExpandHostlist(strings.TrimSpace(out))
	require.NoError(t, err)
	return nodes
}

// hostnameIn is `hostname` inside sandbox id: on the test cluster, the
// name of the node it runs on (each node has a hostname of its own).
func (e *slurmEnv) hostnameIn(t *testing.T, ctx context.Context, extra []string, id string) string {
	t.Helper()
	r := e.cliEnv(t, ctx, extra, "exec", id, "--", "hostname")
	require.Equal(t, 0, r.Code, "hostname in %s: %s", id, r.Stderr)
	return strings.TrimSpace(r.Stdout)
}
