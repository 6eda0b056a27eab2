package realenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// usableState: the node takes jobs and steps. plnd: idle, but backfill
// has planned a pending job for it (seen right after a burst of holder
// jobs); it still takes steps and jobs.
func usableState(s string) bool {
	switch NodeState(s) {
	case "idle", "mix", "mixed", "alloc", "allocated", "comp", "completing", "plnd", "planned":
		return true
	}
	return false
}

// Nodes reads `sinfo -h -N -o '%N|%t'` lines (a node shows once per
// partition) and returns every node, sorted, and those not usable with
// their state.
func Nodes(out string) (all []string, unusable map[string]string) {
	unusable = map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		n, s, found := strings.Cut(strings.TrimSpace(l), "|")
		if !found || n == "" {
			continue
		}
		if !slices.Contains(all, n) {
			all = append(all, n)
		}
		if !usableState(s) {
			unusable[n] = s
		}
	}
	slices.Sort(all)
	return all, unusable
}

// WaitForNodes polls sinfo (through the caller's runner) until every node
// it lists is usable, and returns them: a run that spreads sandboxes over
// the cluster's nodes needs all of them, and a node in a passing state
// (resuming, finishing a burst of jobs) must not fail it at one glance.
func WaitForNodes(ctx context.Context, sinfo func(context.Context) (string, error), wait time.Duration) ([]string, error) {
	deadline := time.Now().Add(wait)
	for {
		out, err := sinfo(ctx)
		if err != nil {
			return nil, err
		}
		all, unusable := Nodes(out)
		if len(all) > 0 && len(unusable) == 0 {
			return all, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sinfo lists no nodes or some not usable after %s (%v; %q); bring the cluster up: scripts/slurm-cluster.sh up [--nodes N]",
				wait, unusable, strings.TrimSpace(out))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// OnHost is argv run under hostname host, in a UTS namespace of its own
// (needs root). Apptainer keeps its instances per hostname, so on a
// cluster whose nodes are namespaces of one machine (scripts/slurm-cluster.sh
// up --nodes N) a node's instances are listed and stopped under its name.
func OnHost(host string, argv ...string) []string {
	return append([]string{"unshare", "--uts", "--", "/bin/sh", "-c", `hostname "$0" && exec "$@"`, host}, argv...)
}

// ShortHostname is this machine's name as apptainer keys its instances
// (up to the first dot).
func ShortHostname() string {
	h, _ := os.Hostname()
	h, _, _ = strings.Cut(h, ".")
	return h
}

// RegistryHosts lists the hostnames that have instance state in the
// apptainer registry of configDir (APPTAINER_CONFIGDIR), this machine's
// always first.
func RegistryHosts(configDir string) []string {
	own := ShortHostname()
	hosts := []string{own}
	entries, _ := os.ReadDir(filepath.Join(configDir, "instances", "app"))
	for _, e := range entries {
		if e.IsDir() && e.Name() != own {
			hosts = append(hosts, e.Name())
		}
	}
	return hosts
}
