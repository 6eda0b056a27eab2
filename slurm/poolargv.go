package slurm

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/internal/shellquote"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// PoolSpec is what `gym-host pool up` asks for.
type PoolSpec struct {
	Name      string
	Partition string
	Nodes     int
	// TimeLimit is the allocation's --time ("" = the partition's
	// max_pool_time, else SLURM's default for the partition).
	TimeLimit string
	// CPUsPerNode, MemoryMiBPerNode and GPUsPerNode size the allocation on
	// each node; with CPUs and memory both 0 the pool takes whole nodes
	// (--exclusive, --mem=0).
	CPUsPerNode      int
	MemoryMiBPerNode int64
	GPUsPerNode      int
}

// PoolSbatchArgv submits a pool's allocation:
//
//	sbatch --parsable -J gym-pool-NAME.TAG --comment=gym-apptainer -p P -N N --ntasks-per-node=1 --no-kill --no-requeue
//	       (-c C | --exclusive) --mem=(M|0) [--gres=gpu:G] [-t T] [-A A] [--qos Q] [-C C] <extra_sbatch_args>
//	       --export=ALL -o LOG --wrap "exec srun --overlap ... AGENT agent --dir DIR"
//
// --no-kill keeps the pool when one of its nodes fails: the sandboxes on
// the other nodes live on. --no-requeue: a pool whose batch host fails must
// end, not come back empty under the same record (clusters with
// JobRequeue=1 would requeue it). The wrapped srun starts one agent per node as a
// step that overlaps everything (the agent holds nothing the sandboxes
// need) and asks for little memory, so that it never stands in the way of
// a holder step. Like a holder job, the batch job carries SubmitExport's
// environment only.
func PoolSbatchArgv(p *Partition, s PoolSpec, jobName, logPath, agent, agentsDir string) []string {
	argv := []string{"sbatch", "--parsable", "-J", jobName, "--comment=" + JobComment}
	if p.Name != "" {
		argv = append(argv, "-p", p.Name)
	}
	argv = append(argv, "-N", strconv.Itoa(s.Nodes), "--ntasks-per-node=1", "--no-kill", "--no-requeue")
	if s.CPUsPerNode > 0 {
		argv = append(argv, "-c", strconv.Itoa(s.CPUsPerNode))
	}
	switch {
	case s.MemoryMiBPerNode > 0:
		argv = append(argv, "--mem="+strconv.FormatInt(s.MemoryMiBPerNode, 10)+"M")
	case s.CPUsPerNode == 0:
		argv = append(argv, "--exclusive", "--mem=0")
	}
	if s.GPUsPerNode > 0 {
		argv = append(argv, "--gres=gpu:"+strconv.Itoa(s.GPUsPerNode))
	}
	argv = appendIf(argv, "-t", s.TimeLimit)
	argv = appendIf(argv, "-A", p.Account)
	argv = appendIf(argv, "--qos", p.QOS)
	argv = appendIf(argv, "-C", p.Constraint)
	argv = append(argv, p.ExtraSbatchArgs...)
	argv = append(argv, SubmitExport, "-o", logPath)
	srun := []string{"srun", "--overlap", "-N", strconv.Itoa(s.Nodes), "--ntasks-per-node=1", "-c1", "--mem=64M",
		"--kill-on-bad-exit=0", "-J", jobName}
	srun = append(srun, p.ExtraSrunArgs...)
	srun = append(srun, SubmitExport, agent, "agent", "--dir", agentsDir)
	return append(argv, "--wrap", "exec "+shellquote.Join(srun))
}

// ScontrolJobDetailArgv shows one job with its per-node allocation (CPU
// ids, memory, GRES of each node).
func ScontrolJobDetailArgv(id string) []string {
	return []string{"scontrol", "show", "-d", "job", id}
}

// nodeDetailRE is one per-node line of `scontrol show -d job`:
// "Nodes=node[1-2] CPU_IDs=0-7 Mem=16384 GRES=gpu:2(IDX:0-1)".
var nodeDetailRE = regexp.MustCompile(`(?m)^\s*Nodes=(\S+)\s+CPU_IDs=(\S+)\s+Mem=(\d+)(?:\s+GRES=(\S*))?`)

// ParseJobNodes reads each node's allocation from `scontrol show -d job`
// output, node lists expanded.
func ParseJobNodes(out []byte) ([]PoolNode, error) {
	var nodes []PoolNode
	for _, m := range nodeDetailRE.FindAllStringSubmatch(string(out), -1) {
		names, err := ExpandHostlist(m[1])
		if err != nil {
			return nil, err
		}
		cpus, err := countIDs(m[2])
		if err != nil {
			return nil, fmt.Errorf("scontrol show -d job: CPU_IDs=%s: %w", m[2], err)
		}
		mem, _ := strconv.ParseInt(m[3], 10, 64)
		gpus := gresGPUs(m[4])
		for _, n := range names {
			nodes = append(nodes, PoolNode{Name: n, CPUs: cpus, MemoryMiB: mem, GPUs: gpus})
		}
	}
	if len(nodes) == 0 {
		return nil, fmt.Errorf("scontrol show -d job printed no Nodes=... CPU_IDs=... line: %q", oneLine(string(out)))
	}
	return nodes, nil
}

// countIDs counts the ids of a list like "0-3,6,8-9".
func countIDs(list string) (int, error) {
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0, fmt.Errorf("bad id %q", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0, fmt.Errorf("bad range %q", part)
			}
		}
		n += b - a + 1
	}
	return n, nil
}

// gresGPUs is the gpu count of a node's GRES ("gpu:2(IDX:0-1)",
// "gpu:a100:2(IDX:0-1)", "gpu:1(IDX:0),shard:0"); 0 when none.
func gresGPUs(gres string) int {
	total := 0
	for _, item := range splitOutsideParens(gres) {
		name, _, _ := strings.Cut(item, "(")
		f := strings.Split(name, ":")
		if f[0] != "gpu" || len(f) < 2 {
			continue
		}
		if n, err := strconv.Atoi(f[len(f)-1]); err == nil {
			total += n
		}
	}
	return total
}

// splitOutsideParens splits s at commas outside parentheses (a GRES list:
// "gpu:2(IDX:0-1),shard:1").
func splitOutsideParens(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// slurmMinutes reads a SLURM time limit as minutes; unlimited is true for
// UNLIMITED/INFINITE. Seconds are rounded up.
func slurmMinutes(t string) (minutes int, unlimited bool, err error) {
	if !timeLimitRE.MatchString(t) {
		return 0, false, fmt.Errorf("%q is not a SLURM time limit (minutes, HH:MM:SS, D-HH:MM:SS or UNLIMITED)", t)
	}
	if u := strings.ToUpper(t); u == "UNLIMITED" || u == "INFINITE" {
		return 0, true, nil
	}
	days := 0
	if d, rest, ok := strings.Cut(t, "-"); ok {
		days, _ = strconv.Atoi(d)
		t = rest
		// D-H, D-H:M, D-H:M:S
		f := strings.Split(t, ":")
		h, _ := strconv.Atoi(f[0])
		m, s := 0, 0
		if len(f) > 1 {
			m, _ = strconv.Atoi(f[1])
		}
		if len(f) > 2 {
			s, _ = strconv.Atoi(f[2])
		}
		return days*24*60 + h*60 + m + ceilDiv(s, 60), false, nil
	}
	// M, M:S, H:M:S
	f := strings.Split(t, ":")
	n := make([]int, len(f))
	for i, x := range f {
		n[i], _ = strconv.Atoi(x)
	}
	switch len(n) {
	case 1:
		return n[0], false, nil
	case 2:
		return n[0] + ceilDiv(n[1], 60), false, nil
	}
	return n[0]*60 + n[1] + ceilDiv(n[2], 60), false, nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// CheckPoolCaps refuses a pool that breaks its partition's caps
// (max_pool_nodes, max_pool_time), before anything is submitted, naming
// the cap. It returns the time limit to submit: the spec's, else the cap.
func CheckPoolCaps(p *Partition, s PoolSpec) (string, error) {
	if s.Nodes < 1 {
		return "", fmt.Errorf("pool %s: --nodes must be at least 1, got %d: %w", s.Name, s.Nodes, provider.ErrInvalid)
	}
	if p.MaxPoolNodes > 0 && s.Nodes > p.MaxPoolNodes {
		return "", fmt.Errorf("pool %s: %d nodes exceed max_pool_nodes %d of partition %s (partitions file): %w",
			s.Name, s.Nodes, p.MaxPoolNodes, p.label(), provider.ErrInvalid)
	}
	limit := s.TimeLimit
	if limit != "" {
		if _, _, err := slurmMinutes(limit); err != nil {
			return "", fmt.Errorf("pool %s: --time %w: %w", s.Name, err, provider.ErrInvalid)
		}
	}
	if p.MaxPoolTime == "" {
		return limit, nil
	}
	if limit == "" {
		return p.MaxPoolTime, nil
	}
	capMin, capUnlimited, err := slurmMinutes(p.MaxPoolTime)
	if err != nil || capUnlimited {
		return limit, nil //nolint:nilerr // a cap that is not a limit caps nothing
	}
	want, unlimited, _ := slurmMinutes(limit)
	if unlimited || want > capMin {
		return "", fmt.Errorf("pool %s: --time %s exceeds max_pool_time %s of partition %s (partitions file): %w",
			s.Name, limit, p.MaxPoolTime, p.label(), provider.ErrInvalid)
	}
	return limit, nil
}
