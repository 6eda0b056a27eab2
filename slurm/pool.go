package slurm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/atomicfile"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// PoolVersion is the pool record format this build writes.
const PoolVersion = 1

// ExtraPool is the handle Extra key naming the pool a sandbox was placed in.
const ExtraPool = "pool"

// poolJobPrefix starts every pool job's name: "gym-pool-NAME.<owner tag>".
// It is never an instance name (owner.Parse refuses it), so gc never takes
// a pool job for a leaked sandbox.
const poolJobPrefix = "gym-pool-"

// Pool is one standing pool: an allocation whose node agents keep it
// alive, in which sandboxes are placed as holder steps.
type Pool struct {
	Version   int        `json:"version"`
	Name      string     `json:"name"`
	JobID     string     `json:"job_id"`
	JobName   string     `json:"job_name"`
	Partition string     `json:"partition,omitempty"`
	TimeLimit string     `json:"time_limit,omitempty"`
	Nodes     []PoolNode `json:"nodes"`
	Created   time.Time  `json:"created"`
}

// PoolNode is one node of a pool and what the pool holds on it, as its
// agent found it in its step's environment. Zero means not known (that
// resource is not counted when packing).
type PoolNode struct {
	Name      string `json:"name"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int64  `json:"memory_mib"`
	GPUs      int    `json:"gpus"`
}

// Node returns the pool's node called name, or nil.
func (p *Pool) Node(name string) *PoolNode {
	for i := range p.Nodes {
		if p.Nodes[i].Name == name {
			return &p.Nodes[i]
		}
	}
	return nil
}

// NodeNames lists the pool's nodes in record order.
func (p *Pool) NodeNames() []string {
	out := make([]string, len(p.Nodes))
	for i, n := range p.Nodes {
		out[i] = n.Name
	}
	return out
}

// poolNameRE is what a pool name may be: it goes into file names and a job
// name, so no '/', '.', space or glob character.
var poolNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

// ValidPoolName reports whether name may name a pool.
func ValidPoolName(name string) bool { return poolNameRE.MatchString(name) }

func checkPoolName(name string) error {
	if !ValidPoolName(name) {
		return fmt.Errorf("pool name %q: use 1-40 lower-case letters, digits, '-' or '_', starting with a letter or digit: %w",
			name, provider.ErrInvalid)
	}
	return nil
}

// PoolJobName is the SLURM job name of pool name made by owner tag own.
func PoolJobName(name, own string) string { return poolJobPrefix + name + "." + own }

// ParsePoolJobName splits a pool job's name into pool name and owner tag.
func ParsePoolJobName(job string) (name, own string, ok bool) {
	rest, found := strings.CutPrefix(job, poolJobPrefix)
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 || !ValidPoolName(rest[:i]) || rest[i+1:] == "" {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// PoolStore is the pools directory of one state dir:
//
//	<state_dir>/pools/NAME.json      the record (0600, replaced atomically)
//	<state_dir>/pools/NAME.d/        the pool's files: agents/NODE.json (one
//	                                 per node agent), reserve/ID.json (a node
//	                                 chosen for a sandbox being created),
//	                                 lock, pool.log (the batch job's output)
type PoolStore struct {
	Dir string
}

// PoolsDir is the pools directory of stateDir.
func PoolsDir(stateDir string) string { return filepath.Join(stateDir, "pools") }

func (s PoolStore) recordPath(name string) string { return filepath.Join(s.Dir, name+".json") }

// FilesDir is where pool name's agents, reservations and log live.
func (s PoolStore) FilesDir(name string) string { return filepath.Join(s.Dir, name+".d") }

// AgentsDir is where pool name's node agents write their records.
func (s PoolStore) AgentsDir(name string) string { return filepath.Join(s.FilesDir(name), "agents") }

func (s PoolStore) reserveDir(name string) string { return filepath.Join(s.FilesDir(name), "reserve") }

func (s PoolStore) logPath(name string) string { return filepath.Join(s.FilesDir(name), "pool.log") }

// Get reads pool name's record. A pool that does not exist is an error
// wrapping provider.ErrInvalid that says how to make one.
func (s PoolStore) Get(name string) (*Pool, error) {
	if err := checkPoolName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.recordPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pool %q does not exist in %s (start it with 'gym-host pool up --name %s --partition P --nodes N'): %w",
			name, s.Dir, name, provider.ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("read pool record: %w", err)
	}
	return decodePool(b, name)
}

func decodePool(b []byte, name string) (*Pool, error) {
	var p Pool
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("pool record %s.json is not valid JSON: %w", name, err)
	}
	switch {
	case p.Version > PoolVersion:
		return nil, fmt.Errorf("pool record %s.json has version %d, newer than this build's %d; use a newer gym-apptainer", name, p.Version, PoolVersion)
	case p.Name != name:
		return nil, fmt.Errorf("pool record %s.json names pool %q, not %q (edited or copied file?)", name, p.Name, name)
	case p.JobID == "" || strings.Trim(p.JobID, "0123456789") != "":
		return nil, fmt.Errorf("pool record %s.json has no valid job id (%q)", name, p.JobID)
	}
	return &p, nil
}

// Put writes p's record, 0600, through a temporary file renamed into place.
func (s PoolStore) Put(p *Pool) error {
	if err := checkPoolName(p.Name); err != nil {
		return err
	}
	p.Version = PoolVersion
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("encode pool record: %w", err)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("create the pools directory: %w", err)
	}
	return atomicfile.Write(s.recordPath(p.Name), b)
}

// Delete removes pool name's record and files. A missing one is success.
func (s PoolStore) Delete(name string) error {
	if err := checkPoolName(name); err != nil {
		return err
	}
	if err := os.Remove(s.recordPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pool record: %w", err)
	}
	if err := os.RemoveAll(s.FilesDir(name)); err != nil {
		return fmt.Errorf("remove pool files: %w", err)
	}
	return nil
}

// SkippedPool is a pool record that could not be read.
type SkippedPool struct {
	File   string
	Reason string
}

// List reads every pool record, sorted by name. Unreadable ones are
// returned apart, with the reason, as the handle store does: one bad file
// must not hide the others.
func (s PoolStore) List() ([]*Pool, []SkippedPool, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list pools: %w", err)
	}
	var out []*Pool
	var skipped []SkippedPool
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		file := filepath.Join(s.Dir, e.Name())
		if !ValidPoolName(name) {
			skipped = append(skipped, SkippedPool{File: file, Reason: "not a pool name"})
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			skipped = append(skipped, SkippedPool{File: file, Reason: err.Error()})
			continue
		}
		p, err := decodePool(b, name)
		if err != nil {
			skipped = append(skipped, SkippedPool{File: file, Reason: err.Error()})
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Pool) int { return strings.Compare(a.Name, b.Name) })
	return out, skipped, nil
}
