package realenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/plugin"
)

// IsolateEnv points apptainer at the private registry and drops the
// variables srun, sbatch and salloc read as options (a program started inside
// a job would otherwise hand its own job's settings to every srun it runs). The
// environment is what sbatch and srun export to the job, so the holder and
// every exec on the node see the same registry. restore undoes it.
func IsolateEnv(configDir, logLevel string) (restore func() error, err error) {
	saved := map[string]*string{}
	set := func(k string, v *string) error {
		if _, done := saved[k]; !done {
			if old, ok := os.LookupEnv(k); ok {
				saved[k] = &old
			} else {
				saved[k] = nil
			}
		}
		if v == nil {
			return os.Unsetenv(k)
		}
		return os.Setenv(k, *v)
	}
	restore = func() error {
		var errs []error
		for k, v := range saved {
			if v == nil {
				errs = append(errs, os.Unsetenv(k))
			} else {
				errs = append(errs, os.Setenv(k, *v))
			}
		}
		return errors.Join(errs...)
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if IsSlurmInputVar(k) {
			if err := set(k, nil); err != nil {
				return restore, err
			}
		}
	}
	if err := set("APPTAINER_CONFIGDIR", &configDir); err != nil {
		return restore, err
	}
	if logLevel == "" && os.Getenv(plugin.LogLevelEnv) == "" {
		logLevel = "warn" // gym-host's default
	}
	if logLevel != "" {
		if err := set(plugin.LogLevelEnv, &logLevel); err != nil {
			return restore, err
		}
	}
	// A plugin daemon would outlive the run and serve other configs'
	// callers: the run's hosts and gym-host processes start their own.
	return restore, set(plugin.DaemonEnv, nil)
}

// IsSlurmInputVar: SLURM_CONF says which cluster to talk to and stays.
func IsSlurmInputVar(key string) bool {
	if key == "SLURM_CONF" {
		return false
	}
	for _, p := range []string{"SLURM_", "SBATCH_", "SALLOC_", "SRUN_"} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// PickNode chooses from `sinfo -h -N -o '%N|%t'` lines: the node named like
// this host if it is usable (a one-node cluster), else the first usable one
// (node1 of scripts/slurm-cluster.sh up --nodes N).
func PickNode(out, host string) (node string, ok bool) {
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		n, s, found := strings.Cut(strings.TrimSpace(l), "|")
		if !found || !usableState(s) {
			continue
		}
		if n == host {
			return n, true
		}
		if node == "" {
			node = n
		}
	}
	return node, node != ""
}

// WaitForNode polls sinfo (through the caller's runner) until PickNode finds
// a usable node or wait is over: a node in a passing state (resuming,
// finishing a burst of jobs) must not fail a run at one glance.
func WaitForNode(ctx context.Context, sinfo func(context.Context) (string, error), host string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		out, err := sinfo(ctx)
		if err != nil {
			return "", err
		}
		if node, ok := PickNode(out, host); ok {
			return node, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("sinfo lists no usable node after %s (%q); bring the cluster up: scripts/slurm-cluster.sh up", wait, strings.TrimSpace(out))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// NodeState is sinfo's %t without its flag suffixes (idle*, mix~ ...).
func NodeState(s string) string {
	return strings.TrimRight(strings.TrimSpace(s), "*~#!%$@^-")
}

// terminal job states: the job holds nothing on the node any more.
var TerminalStates = map[string]bool{
	"COMPLETED": true, "CANCELLED": true, "FAILED": true, "TIMEOUT": true, "NODE_FAIL": true,
	"OUT_OF_MEMORY": true, "PREEMPTED": true, "BOOT_FAIL": true, "DEADLINE": true,
}

// LiveJobs reads `squeue -o '%i|%T'` lines and returns "J STATE" for each
// job not in a terminal state.
func LiveJobs(out string) []string {
	var live []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		id, state, ok := strings.Cut(strings.TrimSpace(l), "|")
		if ok && !TerminalStates[state] {
			live = append(live, id+" "+state)
		}
	}
	return live
}

// JobsUnder reads `squeue -O JobID,StdOut` lines and returns the ids of
// the jobs whose output path is under root.
func JobsUnder(out, root string) []string {
	var ids []string
	prefix := strings.TrimSuffix(root, "/") + "/"
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && strings.HasPrefix(strings.Join(f[1:], " "), prefix) {
			ids = append(ids, f[0])
		}
	}
	return ids
}

// KillPid sends SIGKILL to pid; a process already gone is not an error.
func KillPid(pid int) error {
	err := syscall.Kill(pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}
