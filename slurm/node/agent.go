package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/atomicfile"
)

// Agent is what a pool's node agent reports about its node, in
// <agents dir>/<node>.json, rewritten every heartbeat.
type Agent struct {
	Node  string `json:"node"`
	JobID string `json:"job_id"`
	// CPUs, MemoryMiB and GPUs are what the pool's allocation holds on this
	// node (SLURM_CPUS_ON_NODE, SLURM_MEM_PER_NODE, the step's GPUs); zero
	// means SLURM did not say.
	CPUs      int       `json:"cpus"`
	MemoryMiB int64     `json:"memory_mib"`
	GPUs      int       `json:"gpus"`
	PID       int       `json:"pid"`
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"`
}

// AgentHeartbeat is how often an agent rewrites its record.
const AgentHeartbeat = 10 * time.Second

const agentUsage = "usage: " + prog + " agent --dir DIR"

// AgentPath is where the agent of node writes its record in dir.
func AgentPath(dir, node string) string { return filepath.Join(dir, node+".json") }

// ReadAgents reads every agent record in dir, by node. A record that does
// not parse is left out: the agent rewrites it whole at its next heartbeat.
func ReadAgents(dir string) (map[string]Agent, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Agent{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the pool's agent records: %w", err)
	}
	out := map[string]Agent{}
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var a Agent
		if json.Unmarshal(b, &a) == nil && a.Node != "" {
			out[a.Node] = a
		}
	}
	return out, nil
}

// agentMain is one node's agent of a standing pool, run on every node of
// the pool's allocation by the batch script's srun. It keeps that step
// alive, and with it the allocation's hold on the node, for as long as the
// pool lives; it tells the host which node it is on and what the pool holds
// there (the host packs sandboxes by it), with a heartbeat the host can
// check; and on the way out (scancel, the time limit, pool down) it removes
// its record, so a record present is an agent alive. It starts and stops no
// sandbox: each sandbox's holder is a step of the same allocation and stops
// its own instance when SLURM signals the steps.
func agentMain(args []string) int {
	fs := newFlagSet("agent")
	dir := fs.String("dir", "", "directory of the pool's agent records")
	if err := fs.Parse(args); err != nil {
		return usageError("agent", agentUsage, err)
	}
	if *dir == "" || fs.NArg() != 0 {
		return usageError("agent", agentUsage, errors.New("--dir is required and there are no arguments"))
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	a := agentFromEnv(os.Getenv, os.Hostname)
	path := AgentPath(*dir, a.Node)
	if err := writeAgent(path, a); err != nil {
		fmt.Fprintf(os.Stderr, "%s agent: %v\n", prog, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "%s agent: node %s of job %s: cpus %d, memory_mib %d, gpus %d\n",
		prog, a.Node, a.JobID, a.CPUs, a.MemoryMiB, a.GPUs)
	tick := time.NewTicker(AgentHeartbeat)
	defer tick.Stop()
	for {
		select {
		case sig := <-signals:
			_ = os.Remove(path)
			fmt.Fprintf(os.Stderr, "%s agent: node %s: %s, leaving the pool\n", prog, a.Node, signame(sig))
			return 0
		case <-tick.C:
			a.Heartbeat = time.Now().UTC()
			if err := writeAgent(path, a); err != nil {
				fmt.Fprintf(os.Stderr, "%s agent: %v\n", prog, err)
			}
		}
	}
}

// agentFromEnv reads what SLURM tells the step about its node.
func agentFromEnv(getenv func(string) string, hostname func() (string, error)) Agent {
	node := getenv("SLURMD_NODENAME")
	if node == "" {
		h, _ := hostname()
		node, _, _ = strings.Cut(h, ".")
	}
	now := time.Now().UTC()
	a := Agent{Node: node, JobID: getenv("SLURM_JOB_ID"), PID: os.Getpid(), Started: now, Heartbeat: now}
	a.CPUs, _ = strconv.Atoi(getenv("SLURM_CPUS_ON_NODE"))
	a.MemoryMiB, _ = strconv.ParseInt(getenv("SLURM_MEM_PER_NODE"), 10, 64)
	a.GPUs = countGPUs(getenv)
	return a
}

// countGPUs is the number of GPUs the step sees: SLURM_GPUS_ON_NODE, else
// the length of the device list SLURM set.
func countGPUs(getenv func(string) string) int {
	if n, err := strconv.Atoi(getenv("SLURM_GPUS_ON_NODE")); err == nil {
		return n
	}
	for _, k := range []string{"SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"} {
		if v := getenv(k); v != "" {
			return len(strings.Split(v, ","))
		}
	}
	return 0
}

func writeAgent(path string, a Agent) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode the agent record: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s for the agent record: %w", dir, err)
	}
	if err := atomicfile.Write(path, append(b, '\n')); err != nil {
		return fmt.Errorf("the agent record: %w", err)
	}
	return nil
}
