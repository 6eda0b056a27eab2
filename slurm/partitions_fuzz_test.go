package slurm

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// FuzzLoadPartitions feeds LoadPartitions arbitrary partitions files. It
// must not panic; a refusal names the file; an accepted file holds only
// partitions the rest of the adapter can trust (every rule LoadPartitions
// promises, checked again here), reads the same twice, and Pick over it
// either refuses with provider.ErrInvalid or returns one of its partitions
// with the request filled (never lowered) and within that partition's
// maxima.
func FuzzLoadPartitions(f *testing.F) {
	f.Add([]byte("partitions:\n  - {name: cpu, default: true, cpu: {default: 1, max: 2}}\n"))
	f.Add([]byte("partitions:\n  - {name: gpu, gpus: true, gpu_types: [a100], gpu: {default: 1, max: 4}, memory_mib: {max: 1024}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "partitions.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		ps, err := LoadPartitions(path)
		if err != nil {
			if ps != nil {
				t.Fatalf("LoadPartitions returned partitions and an error: %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("the error does not name the file %s: %v", path, err)
			}
			return
		}
		checkPartitions(t, ps)
		again, err := LoadPartitions(path)
		if err != nil || !reflect.DeepEqual(ps, again) {
			t.Fatalf("a second read of the same file differs: %v", err)
		}
		requests := []resources.Resources{
			{}, {CPU: 0.5}, {CPU: 3, MemoryMiB: 2048}, {GPU: 1}, {GPU: 2, GPUType: "a100"}, {MemoryMiB: 1 << 40},
		}
		for _, r := range requests {
			checkPick(t, ps, r, "")
			for _, p := range ps.List {
				checkPick(t, ps, r, p.Name)
			}
		}
	})
}

func checkPartitions(t *testing.T, ps *Partitions) {
	t.Helper()
	if len(ps.List) == 0 {
		t.Fatal("an accepted partitions file lists no partition")
	}
	names := map[string]bool{}
	defaults := 0
	for _, p := range ps.List {
		switch {
		case p.Name == "" || strings.HasPrefix(p.Name, "-") || strings.ContainsAny(p.Name, ", \t\n\r"):
			t.Fatalf("accepted partition name %q", p.Name)
		case names[p.Name]:
			t.Fatalf("accepted duplicate partition %q", p.Name)
		}
		names[p.Name] = true
		if p.Default {
			defaults++
		}
		for _, l := range []Limit{p.CPU, p.MemoryMiB, p.GPU} {
			if l.Default < 0 || l.Max < 0 || math.IsNaN(l.Default) || math.IsNaN(l.Max) ||
				math.IsInf(l.Default, 0) || math.IsInf(l.Max, 0) || (l.Max > 0 && l.Max < l.Default) {
				t.Fatalf("partition %q: accepted limit %+v", p.Name, l)
			}
		}
		if p.MemoryMiB.Default != math.Trunc(p.MemoryMiB.Default) || p.GPU.Default != math.Trunc(p.GPU.Default) {
			t.Fatalf("partition %q: accepted fractional memory or gpu default", p.Name)
		}
		if !slices.Contains([]string{EnforceSlurm, EnforceApptainer, EnforceBoth}, p.Enforce) {
			t.Fatalf("partition %q: accepted enforce %q", p.Name, p.Enforce)
		}
		if !p.GPUs && (p.GPU != Limit{} || len(p.GPUTypes) > 0) {
			t.Fatalf("partition %q: gpu settings on a partition without gpus", p.Name)
		}
		for _, g := range p.GPUTypes {
			if !resources.ValidGPUType(g) {
				t.Fatalf("partition %q: accepted gpu type %q", p.Name, g)
			}
		}
		for _, a := range p.ExtraSbatchArgs {
			if f := ownFlag(a, ownSbatchArgs); f != "" {
				t.Fatalf("partition %q: accepted sbatch arg %q that sets %s", p.Name, a, f)
			}
		}
		for _, a := range p.ExtraSrunArgs {
			if f := ownFlag(a, ownSrunArgs); f != "" {
				t.Fatalf("partition %q: accepted srun arg %q that sets %s", p.Name, a, f)
			}
		}
		for _, d := range []string{p.ApptainerConf, p.StagingRoot, p.ImageCacheDir} {
			if d != "" && (!filepath.IsAbs(d) || filepath.Clean(d) != d) {
				t.Fatalf("partition %q: accepted path %q that is not absolute and clean", p.Name, d)
			}
		}
		if p.TimeLimit != "" && !timeLimitRE.MatchString(p.TimeLimit) {
			t.Fatalf("partition %q: accepted time limit %q", p.Name, p.TimeLimit)
		}
	}
	if defaults > 1 {
		t.Fatalf("accepted %d default partitions", defaults)
	}
}

func checkPick(t *testing.T, ps *Partitions, r resources.Resources, forced string) {
	t.Helper()
	p, filled, err := ps.Pick(r, forced)
	if err != nil {
		if !errors.Is(err, provider.ErrInvalid) {
			t.Fatalf("Pick(%+v, %q): a refusal that is not ErrInvalid: %v", r, forced, err)
		}
		return
	}
	if p == nil || ps.Find(p.Name) == nil || (forced != "" && p.Name != forced) {
		t.Fatalf("Pick(%+v, %q) returned partition %+v, not one of the file's", r, forced, p)
	}
	if err := filled.Validate(); err != nil {
		t.Fatalf("Pick(%+v, %q) filled an invalid request: %v", r, forced, err)
	}
	if filled.CPU < r.CPU || filled.MemoryMiB < r.MemoryMiB || filled.GPU < r.GPU || filled.GPUType != r.GPUType || filled.DiskGiB != r.DiskGiB {
		t.Fatalf("Pick(%+v, %q) changed the request to %+v", r, forced, filled)
	}
	if why := p.misfit(filled); len(why) > 0 {
		t.Fatalf("Pick(%+v, %q) chose %s, which it does not fit: %s", r, forced, p.Name, strings.Join(why, "; "))
	}
}
