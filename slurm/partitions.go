// Package slurm places sandboxes on compute nodes through SLURM: the admin's
// partitions file and the choice of a partition for a request, the argv of
// every slurm command the adapter runs, the parsing of their output, and one
// poller per process that keeps job-state queries constant in the number of
// sandboxes.
package slurm

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gym-apptainer/gym-apptainer/internal/yamlstrict"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// Enforcement modes: who enforces a sandbox's cpu and memory limits.
const (
	// EnforceSlurm: the job's or step's cgroup (the sandbox's allocation) is
	// the limit; the instance must live inside it.
	EnforceSlurm = "slurm"
	// EnforceApptainer: Apptainer's own --cpus/--memory, with an
	// apptainer.conf that gives each instance its own cgroup.
	EnforceApptainer = "apptainer"
	// EnforceBoth: the allocation and Apptainer's flags.
	EnforceBoth = "both"
)

// Limit is a partition's default and maximum for one resource. Zero means
// "none": no default (the request's own zero goes to SLURM, which applies
// its own defaults) or no maximum known (SLURM has the last word).
type Limit struct {
	Default float64
	Max     float64
}

// Partition is one entry of the admin's partitions file.
type Partition struct {
	// Name is the SLURM partition (-p); "" means SLURM's default partition.
	Name string
	// Default marks the partition tried first when none is forced.
	Default bool
	// GPUs: the partition takes gpu requests.
	GPUs bool
	// GPUTypes are the gpu_type values it takes; empty takes any.
	GPUTypes []string
	// GPUStyle spells a GPU request for a new job.
	GPUStyle resources.GPUStyle
	// CPU, MemoryMiB and GPU hold the defaults and maxima; memory and gpu
	// are whole numbers.
	CPU, MemoryMiB, GPU Limit
	// TimeLimit is the holder job's --time ("" = the partition's default).
	TimeLimit string
	// MaxPoolNodes and MaxPoolTime cap a standing pool on this partition
	// (gym-host pool up): its --nodes and its --time. 0 and "" = no cap;
	// a pool up without --time gets MaxPoolTime.
	MaxPoolNodes int
	MaxPoolTime  string
	// Account, QOS and Constraint go to sbatch as -A, --qos and -C.
	Account, QOS, Constraint string
	// ExtraSbatchArgs are added to every holder job's sbatch; ExtraSrunArgs
	// to every srun (holder steps and exec steps).
	ExtraSbatchArgs, ExtraSrunArgs []string
	// Enforce is EnforceSlurm, EnforceApptainer or EnforceBoth.
	Enforce string
	// ApptainerConf is the apptainer.conf for this partition's sandboxes
	// ("" = apptainer's own); StagingRoot and ImageCacheDir are where staging
	// dirs and SIFs go ("" = the config's). Absolute paths.
	ApptainerConf, StagingRoot, ImageCacheDir string
}

// Partitions is the admin's partitions file, in file order.
type Partitions struct {
	// File is the absolute path it was loaded from; "" for DefaultPartitions.
	File string
	List []Partition
}

// DefaultPartitions is what a config without a partitions file gets: one
// partition named "" that stands for SLURM's default partition (no -p flag),
// with no defaults or maxima known, taking any request, enforced by SLURM.
// SLURM itself then accepts or refuses the request at submission.
func DefaultPartitions() *Partitions {
	return &Partitions{List: []Partition{{
		Default: true,
		GPUs:    true,
		Enforce: EnforceSlurm,
	}}}
}

// Find returns the partition called name, or nil.
func (ps *Partitions) Find(name string) *Partition {
	for i := range ps.List {
		if ps.List[i].Name == name {
			return &ps.List[i]
		}
	}
	return nil
}

// Names lists the partitions in file order.
func (ps *Partitions) Names() []string {
	names := make([]string, len(ps.List))
	for i, p := range ps.List {
		names[i] = p.Name
	}
	return names
}

// Pick chooses the partition for a request and returns it with the request
// completed by the partition's defaults (cpu and memory_mib left 0 get the
// partition's default; gpu left 0 gets the partition's gpu default only when
// the partition was forced, so that no sandbox is given GPUs it did not ask
// for just because it landed on a GPU partition).
//
// A forced partition must exist and fit. Otherwise the partitions marked
// default are tried first, then the others in file order; gpu requests only
// go to partitions with gpus: true and an allowed gpu_type. When nothing
// fits, the error wraps provider.ErrInvalid and names, per partition, the
// limit the request breaks.
//
// Without a partitions file (DefaultPartitions) any forced name is taken as
// is, limits unknown.
func (ps *Partitions) Pick(r resources.Resources, forced string) (*Partition, resources.Resources, error) {
	if err := r.Validate(); err != nil {
		return nil, r, fmt.Errorf("%w: %w", err, provider.ErrInvalid)
	}
	if forced != "" {
		p := ps.Find(forced)
		if p == nil && ps.File == "" && len(ps.List) == 1 && ps.List[0].Name == "" {
			cp := ps.List[0]
			cp.Name = forced
			p = &cp
		}
		if p == nil {
			return nil, r, fmt.Errorf("partition %q is not in the partitions file %s (it has %s): %w",
				forced, ps.File, quoteList(ps.Names()), provider.ErrInvalid)
		}
		filled := p.fill(r, true)
		if why := p.misfit(filled); len(why) > 0 {
			return nil, r, fmt.Errorf("partition %s cannot run this sandbox: %s: %w",
				p.label(), strings.Join(why, "; "), provider.ErrInvalid)
		}
		return p, filled, nil
	}
	if len(ps.List) == 0 {
		return nil, r, fmt.Errorf("the partitions file %s lists no partition: %w", ps.File, provider.ErrInvalid)
	}
	var reasons []string
	for _, i := range ps.order() {
		p := &ps.List[i]
		filled := p.fill(r, false)
		why := p.misfit(filled)
		if len(why) == 0 {
			return p, filled, nil
		}
		reasons = append(reasons, why...)
	}
	return nil, r, fmt.Errorf("no partition can run this sandbox: %s: %w",
		strings.Join(reasons, "; "), provider.ErrInvalid)
}

// order is the selection order: default partitions first, each group in
// file order.
func (ps *Partitions) order() []int {
	idx := make([]int, 0, len(ps.List))
	for i, p := range ps.List {
		if p.Default {
			idx = append(idx, i)
		}
	}
	for i, p := range ps.List {
		if !p.Default {
			idx = append(idx, i)
		}
	}
	return idx
}

func (p *Partition) fill(r resources.Resources, forced bool) resources.Resources {
	if r.CPU == 0 {
		r.CPU = p.CPU.Default
	}
	if r.MemoryMiB == 0 {
		r.MemoryMiB = int64(p.MemoryMiB.Default)
	}
	if r.GPU == 0 && forced && p.GPUs {
		r.GPU = int(p.GPU.Default)
	}
	return r
}

// misfit lists every limit of p that r breaks, each naming the partition.
func (p *Partition) misfit(r resources.Resources) []string {
	var why []string
	name := p.label()
	if r.GPU > 0 {
		switch {
		case !p.GPUs:
			why = append(why, fmt.Sprintf("gpu requests need a partition with gpus: true, and partition %s has gpus: false", name))
		case p.GPU.Max > 0 && float64(r.GPU) > p.GPU.Max:
			why = append(why, fmt.Sprintf("gpu %d exceeds the maximum %s of partition %s", r.GPU, num(p.GPU.Max), name))
		}
		if p.GPUs && r.GPUType != "" && len(p.GPUTypes) > 0 && !slices.Contains(p.GPUTypes, r.GPUType) {
			why = append(why, fmt.Sprintf("gpu_type %s is not among the gpu_types of partition %s (%s)",
				r.GPUType, name, strings.Join(p.GPUTypes, ", ")))
		}
	}
	if p.CPU.Max > 0 && float64(r.CPUCeil()) > p.CPU.Max {
		msg := fmt.Sprintf("cpu %s exceeds the maximum %s of partition %s", num(r.CPU), num(p.CPU.Max), name)
		if float64(r.CPUCeil()) != r.CPU {
			msg += fmt.Sprintf(" (SLURM allocates whole CPUs: %d)", r.CPUCeil())
		}
		why = append(why, msg)
	}
	if p.MemoryMiB.Max > 0 && float64(r.MemoryMiB) > p.MemoryMiB.Max {
		why = append(why, fmt.Sprintf("memory_mib %d exceeds the maximum %s of partition %s",
			r.MemoryMiB, num(p.MemoryMiB.Max), name))
	}
	return why
}

// label names a partition in messages; "" is SLURM's default partition.
func (p *Partition) label() string {
	if p.Name == "" {
		return "(SLURM's default)"
	}
	return p.Name
}

func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func quoteList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// PartitionsError is one problem in a partitions file.
type PartitionsError yamlstrict.Error

// Error reads "partitions file FILE line N: KEY: MSG".
func (e *PartitionsError) Error() string {
	return "partitions file " + (*yamlstrict.Error)(e).Error()
}

// LoadPartitions reads an admin's partitions file (schema: the commented
// examples/slurm/partitions.yaml). It is strict: an unknown key, a value of
// the wrong type or an impossible value (a maximum below its default, a
// negative amount, an unknown enforce or gpu_style, a duplicate name) is an
// error naming the file, the dotted key and the line; every problem is
// reported, one a line. Relative apptainer_conf, staging_root and
// image_cache_dir are resolved against the file's directory.
func LoadPartitions(path string) (*Partitions, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("read partitions file %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read partitions file: %w", err)
	}
	root, second, err := yamlstrict.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("partitions file %s: %w", abs, err)
	}
	l := &loader{file: abs, dir: filepath.Dir(abs), lines: map[string]int{}}
	ps := &Partitions{File: abs}
	if second != nil {
		l.Fail(second, "", "%s", yamlstrict.OneDocument)
	}
	if root == nil {
		l.Fail(nil, "", "is empty; list the cluster's partitions under partitions:")
	} else {
		ps.List = l.top(root)
	}
	if err := yamlstrict.Join(l.errs); err != nil {
		return nil, err
	}
	return ps, nil
}

// partitionKeys are the keys of one partition entry, in schema order.
var partitionKeys = []string{
	"name", "default", "gpus", "gpu_types", "gpu_style", "cpu", "memory_mib", "gpu",
	"time_limit", "account", "qos", "constraint", "extra_sbatch_args", "extra_srun_args",
	"enforce", "apptainer_conf", "staging_root", "image_cache_dir", "max_pool_nodes", "max_pool_time",
}

// ownSbatchArgs and ownSrunArgs are flags the adapter sets itself and relies
// on (the job name finds leaked sandboxes, the log explains failed creates,
// one task on one node is what the holder is, --export keeps the caller's
// environment, secrets included, off slurmctld's disk); an admin's extra
// args must not override them.
var (
	ownSbatchArgs = []string{"--parsable", "-J", "--job-name", "-o", "--output", "-e", "--error",
		"--wrap", "--comment", "-N", "--nodes", "-n", "--ntasks", "--export"}
	ownSrunArgs = []string{"--jobid", "-J", "--job-name", "-o", "--output", "-e", "--error",
		"-N", "--nodes", "-n", "--ntasks", "-w", "--nodelist", "--export", "--pty"}
)

// timeLimitRE is what sbatch --time takes: minutes, minutes:seconds,
// hours:minutes:seconds, days-hours, days-hours:minutes,
// days-hours:minutes:seconds, or UNLIMITED/INFINITE.
var timeLimitRE = regexp.MustCompile(`^(?i:unlimited|infinite)$|^\d+(:\d+){0,2}$|^\d+-\d+(:\d+){0,2}$`)

// loader is the yamlstrict.Sink of the shared readers it uses.
type loader struct {
	file, dir string
	lines     map[string]int
	errs      []*PartitionsError
}

// Fail records a problem; one found from the key alone (v nil) is placed
// at the key's value.
func (l *loader) Fail(v *yaml.Node, key, format string, args ...any) {
	e := &PartitionsError{File: l.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if v != nil {
		e.Line = v.Line
	} else {
		e.Line = l.lines[key]
	}
	l.errs = append(l.errs, e)
}

// Place records where key's value is, for Fail and for finding keys set.
func (l *loader) Place(key string, line int) {
	l.lines[key] = line
}

func (l *loader) top(root *yaml.Node) []Partition {
	if root.Kind != yaml.MappingNode {
		l.Fail(root, "", "the top level must be a mapping holding partitions:, got %s", yamlstrict.Describe(root))
		return nil
	}
	var list []Partition
	found := false
	yamlstrict.EachKey(l, "", root, func(name, full string, k, v *yaml.Node) {
		if name != "partitions" {
			l.Fail(k, full, "%s", yamlstrict.UnknownKey(name, []string{"partitions"}))
			return
		}
		found = true
		list = l.partitions(full, v)
	})
	if !found {
		l.Fail(root, "partitions", "is missing; list the cluster's partitions under partitions:")
	}
	return list
}

func (l *loader) partitions(key string, v *yaml.Node) []Partition {
	if v.Kind != yaml.SequenceNode {
		l.Fail(v, key, "must be a list of partitions, got %s", yamlstrict.Describe(v))
		return nil
	}
	if len(v.Content) == 0 {
		l.Fail(v, key, "lists no partition; add at least one")
		return nil
	}
	list := make([]Partition, 0, len(v.Content))
	names := map[string]string{} // name -> key of its first entry
	var defaultKey string
	for i, item := range v.Content {
		full := fmt.Sprintf("%s[%d]", key, i)
		p, ok := l.partition(full, yamlstrict.Deref(item))
		if !ok {
			continue
		}
		if first, dup := names[p.Name]; dup {
			l.Fail(nil, full+".name", "duplicate partition %q (first at %s, line %d)", p.Name, first, l.lines[first+".name"])
		} else {
			names[p.Name] = full
		}
		if p.Default {
			if defaultKey != "" {
				l.Fail(nil, full+".default", "only one partition may be the default; %s already is", defaultKey)
			} else {
				defaultKey = full
			}
		}
		list = append(list, p)
	}
	return list
}

// partition decodes one entry; ok is false when it has no usable name (its
// other problems are reported all the same).
func (l *loader) partition(key string, v *yaml.Node) (Partition, bool) {
	p := Partition{Enforce: EnforceSlurm, GPUStyle: resources.GPUsPerTask}
	if v.Kind != yaml.MappingNode {
		l.Fail(v, key, "must be a mapping (name: ..., cpu: ...), got %s", yamlstrict.Describe(v))
		return p, false
	}
	hasName := false
	yamlstrict.EachKey(l, key, v, func(name, full string, k, val *yaml.Node) {
		if !slices.Contains(partitionKeys, name) {
			l.Fail(k, full, "%s", yamlstrict.UnknownKey(name, partitionKeys))
			return
		}
		if yamlstrict.IsNull(val) && name != "name" {
			return // an empty value means "not set"
		}
		switch name {
		case "name":
			if s, ok := yamlstrict.String(l, full, val); ok {
				hasName = l.checkName(full, val, s)
				p.Name = s
			}
		case "default":
			p.Default, _ = yamlstrict.Bool(l, full, val)
		case "gpus":
			p.GPUs, _ = yamlstrict.Bool(l, full, val)
		case "gpu_types":
			if list, ok := yamlstrict.StringList(l, full, val); ok {
				for i, t := range list {
					if !resources.ValidGPUType(t) {
						l.Fail(val.Content[i], fmt.Sprintf("%s[%d]", full, i),
							"%q may only contain letters, digits, '.', '_' and '-'", t)
					}
				}
				p.GPUTypes = list
			}
		case "gpu_style":
			if s, ok := yamlstrict.String(l, full, val); ok {
				switch s {
				case resources.GPUsPerTask.String():
					p.GPUStyle = resources.GPUsPerTask
				case resources.GRES.String():
					p.GPUStyle = resources.GRES
				default:
					l.Fail(val, full, "must be %s or %s, got %q", resources.GPUsPerTask, resources.GRES, s)
				}
			}
		case "cpu":
			p.CPU = l.limit(full, val, false)
		case "memory_mib":
			p.MemoryMiB = l.limit(full, val, true)
		case "gpu":
			p.GPU = l.limit(full, val, true)
		case "time_limit":
			if s, ok := yamlstrict.String(l, full, val); ok {
				if s != "" && !timeLimitRE.MatchString(s) {
					l.Fail(val, full, "%q is not a SLURM time limit (minutes, HH:MM:SS, D-HH:MM:SS or UNLIMITED)", s)
				}
				p.TimeLimit = s
			}
		case "max_pool_nodes":
			if n, ok := yamlstrict.Number(l, full, val, true); ok {
				if n < 0 {
					l.Fail(val, full, "must be >= 0 (0 = no cap), got %s", val.Value)
				}
				p.MaxPoolNodes = int(n)
			}
		case "max_pool_time":
			if s, ok := yamlstrict.String(l, full, val); ok {
				if s != "" && !timeLimitRE.MatchString(s) {
					l.Fail(val, full, "%q is not a SLURM time limit (minutes, HH:MM:SS, D-HH:MM:SS or UNLIMITED)", s)
				}
				p.MaxPoolTime = s
			}
		case "account":
			p.Account, _ = yamlstrict.String(l, full, val)
		case "qos":
			p.QOS, _ = yamlstrict.String(l, full, val)
		case "constraint":
			p.Constraint, _ = yamlstrict.String(l, full, val)
		case "extra_sbatch_args":
			p.ExtraSbatchArgs = l.extraArgs(full, val, "sbatch", ownSbatchArgs)
		case "extra_srun_args":
			p.ExtraSrunArgs = l.extraArgs(full, val, "srun", ownSrunArgs)
		case "enforce":
			if s, ok := yamlstrict.String(l, full, val); ok {
				switch s {
				case EnforceSlurm, EnforceApptainer, EnforceBoth:
					p.Enforce = s
				default:
					l.Fail(val, full, "must be %s, %s or %s, got %q", EnforceSlurm, EnforceApptainer, EnforceBoth, s)
				}
			}
		case "apptainer_conf":
			p.ApptainerConf, _ = yamlstrict.Path(l, full, val, l.dir)
		case "staging_root":
			p.StagingRoot, _ = yamlstrict.Path(l, full, val, l.dir)
		case "image_cache_dir":
			p.ImageCacheDir, _ = yamlstrict.Path(l, full, val, l.dir)
		}
	})
	if _, seen := l.lines[key+".name"]; !seen {
		l.Fail(v, key+".name", "is required: the SLURM partition's name")
	}
	if !p.GPUs {
		for _, f := range []struct {
			key string
			set bool
		}{
			{"gpu", p.GPU != Limit{}},
			{"gpu_types", len(p.GPUTypes) > 0},
		} {
			if f.set {
				l.Fail(nil, key+"."+f.key, "is set but the partition takes no gpu requests (gpus: false); set gpus: true or remove it")
			}
		}
	}
	return p, hasName
}

func (l *loader) checkName(key string, v *yaml.Node, s string) bool {
	switch {
	case s == "":
		l.Fail(v, key, "must not be empty")
	case strings.HasPrefix(s, "-"):
		l.Fail(v, key, "%q must not start with '-'", s)
	case strings.ContainsAny(s, ", \t\n\r"):
		l.Fail(v, key, "%q must be one partition name, without commas or spaces", s)
	default:
		return true
	}
	return false
}

// limit decodes {default: N, max: M}. Whole numbers only for memory and gpu.
func (l *loader) limit(key string, v *yaml.Node, whole bool) Limit {
	var lim Limit
	if v.Kind != yaml.MappingNode {
		l.Fail(v, key, "must be a mapping {default: N, max: M}, got %s", yamlstrict.Describe(v))
		return lim
	}
	ok := true
	yamlstrict.EachKey(l, key, v, func(name, full string, k, val *yaml.Node) {
		var dst *float64
		switch name {
		case "default":
			dst = &lim.Default
		case "max":
			dst = &lim.Max
		default:
			l.Fail(k, full, "%s", yamlstrict.UnknownKey(name, []string{"default", "max"}))
			ok = false
			return
		}
		if yamlstrict.IsNull(val) {
			return
		}
		n, good := yamlstrict.Number(l, full, val, whole)
		if good && n < 0 {
			l.Fail(val, full, "must be >= 0, got %s", val.Value)
			n, good = 0, false
		}
		ok = ok && good
		*dst = n
	})
	if ok && lim.Max > 0 && lim.Max < lim.Default {
		l.Fail(nil, key+".max", "must be >= %s.default (%s), got %s; 0 or no max means no maximum",
			key[strings.LastIndexByte(key, '.')+1:], num(lim.Default), num(lim.Max))
	}
	return lim
}

func (l *loader) extraArgs(key string, v *yaml.Node, tool string, own []string) []string {
	list, ok := yamlstrict.StringList(l, key, v)
	if !ok {
		return nil
	}
	for i, a := range list {
		if f := ownFlag(a, own); f != "" {
			l.Fail(yamlstrict.Deref(v.Content[i]), fmt.Sprintf("%s[%d]", key, i),
				"%q: gym-apptainer sets %s %s itself; remove it", a, tool, f)
		}
	}
	return list
}

// ownFlag returns the flag of own that arg sets ("--output=x", "-ox" and
// "-o" all set -o), or "".
func ownFlag(arg string, own []string) string {
	for _, f := range own {
		switch {
		case arg == f:
			return f
		case strings.HasPrefix(f, "--") && strings.HasPrefix(arg, f+"="):
			return f
		case !strings.HasPrefix(f, "--") && !strings.HasPrefix(arg, "--") && strings.HasPrefix(arg, f):
			return f
		}
	}
	return ""
}
