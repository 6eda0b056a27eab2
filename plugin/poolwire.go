package plugin

import "time"

// PoolSubcommand is the plugin binary's hidden subcommand that runs one
// `gym-host pool` operation: a PoolRequest as JSON on stdin, a
// PoolResponse as JSON on stdout, progress lines on stderr. Pools are
// SLURM allocations rather than sandboxes, so they are not part of the
// sandbox contract (the gRPC protocol); gym-host runs the plugin once per
// pool command instead, which keeps it from importing the placement.
const PoolSubcommand = "pool"

// Pool operations.
const (
	PoolUp     = "up"
	PoolStatus = "status"
	PoolDown   = "down"
	// PoolGC removes the records of pools that ended (gym-host gc).
	PoolGC = "gc"
	// PoolWarm sets a running pool's warm-spare target and fills it.
	PoolWarm = "warm"
	// PoolRefill tops a pool's spares up to its target in the background;
	// a create that claimed a spare starts it (slurm.RefillOp).
	PoolRefill = "refill"
)

// PoolRequest is one pool operation.
type PoolRequest struct {
	Op        string            `json:"op"`
	Config    string            `json:"config,omitempty"`
	Overrides map[string]string `json:"overrides,omitempty"`
	// Name is the pool (status: "" = every pool).
	Name string `json:"name,omitempty"`
	// Up's request.
	Partition        string `json:"partition,omitempty"`
	Nodes            int    `json:"nodes,omitempty"`
	TimeLimit        string `json:"time_limit,omitempty"`
	CPUsPerNode      int    `json:"cpus_per_node,omitempty"`
	MemoryMiBPerNode int64  `json:"memory_mib_per_node,omitempty"`
	GPUsPerNode      int    `json:"gpus_per_node,omitempty"`
	// Warm is the number of warm spares (up: 0 = none; warm: the new
	// target), each started from WarmImage with WarmCPU and
	// WarmMemoryMiB (0: the partition's defaults). warm keeps the pool's
	// current spec when WarmImage is "".
	Warm          int     `json:"warm,omitempty"`
	WarmImage     string  `json:"warm_image,omitempty"`
	WarmCPU       float64 `json:"warm_cpu,omitempty"`
	WarmMemoryMiB int64   `json:"warm_memory_mib,omitempty"`
	// Timeout bounds pool up's wait for the allocation and its agents.
	Timeout time.Duration `json:"timeout_ns,omitempty"`
	// DryRun: gc only reports.
	DryRun bool `json:"dry_run,omitempty"`
}

// PoolResponse is its result.
type PoolResponse struct {
	Pools   []PoolJSON       `json:"pools,omitempty"`
	Skipped []PoolSkipped    `json:"skipped,omitempty"`
	Closed  []string         `json:"closed,omitempty"`
	Error   *PoolErrorDetail `json:"error,omitempty"`
}

// PoolErrorDetail is a failed operation: the message and its error type
// (provider.ErrorType*).
type PoolErrorDetail struct {
	Message   string `json:"message"`
	ErrorType string `json:"error_type"`
}

// PoolSkipped is a pool record that could not be read.
type PoolSkipped struct {
	File   string `json:"file"`
	Reason string `json:"reason"`
}

// PoolJSON is one pool as gym-host prints it.
type PoolJSON struct {
	Name      string         `json:"name"`
	JobID     string         `json:"job_id"`
	JobName   string         `json:"job_name"`
	Partition string         `json:"partition,omitempty"`
	TimeLimit string         `json:"time_limit,omitempty"`
	Created   time.Time      `json:"created"`
	State     string         `json:"state"`
	Reason    string         `json:"reason,omitempty"`
	Nodes     []PoolNodeJSON `json:"nodes"`
	Spares    PoolSparesJSON `json:"spares"`
}

// PoolSparesJSON is a pool's warm spares: ready to be claimed, starting,
// and the target the pool keeps.
type PoolSparesJSON struct {
	Ready    int `json:"ready"`
	Starting int `json:"starting"`
	Target   int `json:"target"`
}

// PoolNodeJSON is one node of a pool: what the pool holds there, what
// this state dir's sandboxes leave free, and whether its agent reports.
type PoolNodeJSON struct {
	Name          string   `json:"name"`
	CPUs          int      `json:"cpus"`
	MemoryMiB     int64    `json:"memory_mib"`
	GPUs          int      `json:"gpus"`
	FreeCPUs      int      `json:"free_cpus"`
	FreeMemoryMiB int64    `json:"free_memory_mib"`
	FreeGPUs      int      `json:"free_gpus"`
	Agent         bool     `json:"agent"`
	Sandboxes     []string `json:"sandboxes"`
}
