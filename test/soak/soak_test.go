package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

func TestSummarizeNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(101-i)*time.Millisecond)
	}
	s := summarize("exec", d)
	assert.Equal(t, opStats{Op: "exec", N: 100, P50: 50, P90: 90, P99: 99, Max: 100}, s)
	assert.Equal(t, opStats{Op: "close", N: 1, P50: 7, P90: 7, P99: 7, Max: 7}, summarize("close", []time.Duration{7 * time.Millisecond}))
	assert.Equal(t, opStats{Op: "create"}, summarize("create", nil))
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"local", "slurm"}, o.placements())
	assert.Equal(t, 50, o.cycles)
	assert.Equal(t, 8, o.concurrency)

	o, err = parseFlags([]string{"--placement", "slurm", "--cycles", "3", "--config", "x.yaml"})
	require.NoError(t, err)
	assert.Equal(t, []string{"slurm"}, o.placements())

	for _, args := range [][]string{
		{"--placement", "cloud"}, {"--cycles", "0"}, {"--concurrency", "-1"}, {"--config", "x.yaml"}, {"extra"},
	} {
		_, err := parseFlags(args)
		assert.Error(t, err, "%q", args)
	}
}

func TestAttributable(t *testing.T) {
	w := &world{root: "/tmp/gym-soak-local-1", binDir: "/opt/gym/bin", configDir: "/tmp/gym-soak-local-1/apptainer"}
	assert.True(t, w.attributable(procOf(-1, "/opt/gym/bin/gym-apptainer-plugin")))
	assert.True(t, w.attributable(procOf(-1, "squashfuse_ll -o x /tmp/gym-soak-local-1/state/y")))
	assert.False(t, w.attributable(procOf(-1, "/other/bin/gym-apptainer-plugin")))
}

func procOf(pid int, cmdline string) realenv.Proc {
	return realenv.Proc{PID: pid, Cmdline: cmdline}
}

func TestStateOf(t *testing.T) {
	assert.Equal(t, byte('Z'), stateOf([]byte("42 (a) b) Z 1 2")))
	assert.Equal(t, byte('S'), stateOf([]byte(fmt.Sprintf("%d (sleep) S 1", 7))))
	assert.Equal(t, byte(0), stateOf([]byte("junk")))
}
