package integration

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSlurmNoSecretOnSlurmDisk: env values given at create and at exec
// time, by value or taken from gym-host's environment, and a variable of
// the caller that no sandbox asked for, reach the sandbox (or not) as asked
// but appear nowhere under slurmctld's state directory or slurmd's spool
// directory: SLURM stores a batch job's exported environment there.
func TestSlurmNoSecretOnSlurmDisk(t *testing.T) {
	for _, mode := range []string{"job", "allocation"} {
		t.Run(mode, func(t *testing.T) {
			e := newSlurmEnv(t, "auto")
			var inJob []string
			if mode == "allocation" {
				inJob = []string{"SLURM_JOB_ID=" + salloc(t, "-p", "cpu", "-N1", "-n1", "-c1", "--mem=1G", "-t", "10")}
			}
			ctx := e.ctx(3 * time.Minute)
			secret := func(what string) string { return "gymsecret-" + what + "-" + uuid.NewString() }
			createFromEnv, createLit := secret("create-env"), secret("create-lit")
			execFromEnv, execLit := secret("exec-env"), secret("exec-lit")
			callerOnly := secret("caller-only")
			callerEnv := append([]string{"GYM_T_CREATE=" + createFromEnv, "GYM_T_EXEC=" + execFromEnv, "GYM_T_CALLER=" + callerOnly}, inJob...)

			id := e.createCLI(t, ctx, callerEnv, "--cpu", "1", "--memory-mib", "256",
				"--env", "GYM_T_CREATE", "--env", "CREATE_LIT="+createLit)
			r := e.cliEnv(t, ctx, callerEnv, "exec", id, "--env", "GYM_T_EXEC", "--env", "EXEC_LIT="+execLit, "--",
				`echo "$GYM_T_CREATE|$CREATE_LIT|$GYM_T_EXEC|$EXEC_LIT|${GYM_T_CALLER-unset}"`)
			require.Equal(t, 0, r.Code, r.Stderr)
			assert.Equal(t, createFromEnv+"|"+createLit+"|"+execFromEnv+"|"+execLit+"|unset\n", r.Stdout,
				"the sandbox sees its env, and nothing else of the caller's")

			// The env went to the node in a file of the staging dir, gone
			// once the command started.
			left, err := filepath.Glob(filepath.Join(e.handleOf(t, id).StagingDir, ".gym", ".env-*"))
			require.NoError(t, err)
			assert.Empty(t, left, "env files left in the staging dir")

			dirs := slurmDiskDirs(t)
			if mode == "job" {
				// The control: the walk does read SLURM's job files, where
				// the holder job's script names the sandbox's instance.
				var seen []string
				for _, dir := range dirs {
					seen = append(seen, filesContaining(t, dir, e.handleOf(t, id).Instance)...)
				}
				require.NotEmpty(t, seen, "the instance name is in none of SLURM's files: the search would find no secret either")
			}
			for _, s := range []string{createFromEnv, createLit, execFromEnv, execLit, callerOnly} {
				for _, dir := range dirs {
					assert.Empty(t, filesContaining(t, dir, s), "a secret value (%s) is stored under %s", s[:strings.LastIndexByte(s, '-')], dir)
				}
			}

			r = e.cli(t, ctx, "", "close", id)
			require.Equal(t, 0, r.Code, r.Stderr)
			e.untrack(id)
			e.requireNothingLeftSlurm(t)
		})
	}
}

// slurmDiskDirs are slurmctld's StateSaveLocation and every node's
// SlurmdSpoolDir, as `scontrol show config` names them.
func slurmDiskDirs(t *testing.T) []string {
	t.Helper()
	out, err := commandOutput("scontrol", "show", "config")
	require.NoError(t, err)
	var dirs []string
	for _, line := range strings.Split(out, "\n") {
		key, val, ok := strings.Cut(line, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch {
		case !ok:
		case key == "StateSaveLocation":
			dirs = append(dirs, val)
		case key == "SlurmdSpoolDir" && strings.Contains(val, "%n"):
			// One per node: %n is the node name.
			for _, n := range slurmNodes {
				dirs = append(dirs, strings.ReplaceAll(val, "%n", n))
			}
		case key == "SlurmdSpoolDir":
			dirs = append(dirs, val)
		}
	}
	require.GreaterOrEqual(t, len(dirs), 2, "StateSaveLocation and SlurmdSpoolDir in scontrol show config")
	for _, d := range dirs {
		st, err := os.Stat(d)
		require.NoError(t, err, "the test reads %s (run as the slurm user or root)", d)
		require.True(t, st.IsDir())
	}
	return dirs
}

// filesContaining lists the regular files under root whose content holds s.
func filesContaining(t *testing.T, root, s string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file that vanished while we walked
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err == nil && bytes.Contains(b, []byte(s)) {
			hits = append(hits, path)
		}
		return nil
	})
	require.NoError(t, err)
	return hits
}
