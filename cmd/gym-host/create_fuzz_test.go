package main

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/gym-apptainer/gym-apptainer/resources"
)

// FuzzCreateFlags runs `gym-host create` with arbitrary resource and --env
// values against a fake provider. It must exit 0 or 2 (usage), never
// anything else; a usage error names the flag at fault and never depends on
// (so never shows) an --env value; an accepted request reaches the provider
// exactly as written, and both of its translations, Apptainer's flags and
// SLURM's, say the same amounts back in numbers the tools can hold.
func FuzzCreateFlags(f *testing.F) {
	f.Add("1.5", "4096", "1", "a100", "10", "HF_TOKEN")
	f.Add("0", "0", "0", "", "0", "MODE=eval")
	f.Add("0.5", "99999999999999999", "0", "", "0", "SET_TOKEN")
	f.Add("NaN", "-1", "1000", "a:b", "1", "1BAD=secret-value")
	f.Add("1e308", "0x10", "2", "", "9223372036854775807", "KEY=")
	flagNames := []string{"--cpu", "--memory-mib", "--gpu", "--gpu-type", "--disk-gib", "--env"}
	f.Fuzz(func(t *testing.T, cpu, mem, gpu, gpuType, disk, env string) {
		run := func(env string) (int, string, *harness) {
			h := newHarness(t)
			h.env["SET_TOKEN"] = "tok"
			code := h.run("create", "--image", "img.sif", "--cpu="+cpu, "--memory-mib="+mem, "--gpu="+gpu,
				"--gpu-type="+gpuType, "--disk-gib="+disk, "--env="+env)
			return code, h.stderr.String(), h
		}
		code, stderr, h := run(env)
		switch code {
		case exitOK:
		case exitUsage:
			if !slices.ContainsFunc(flagNames, func(n string) bool { return strings.Contains(stderr, n) }) {
				t.Fatalf("the usage error names no flag: %s", stderr)
			}
			if k, v, ok := strings.Cut(env, "="); ok {
				other := "x"
				if v == other {
					other = "y"
				}
				if _, stderr2, _ := run(k + "=" + other); stderr2 != stderr {
					t.Fatalf("the usage error depends on the --env value:\n%s\n%s", stderr, stderr2)
				}
			}
			return
		default:
			t.Fatalf("exit %d, want 0 or 2: %s", code, stderr)
		}
		if len(h.fake.specs) != 1 {
			t.Fatalf("exit 0 with %d creates", len(h.fake.specs))
		}
		r := h.fake.specs[0].Resources
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted invalid resources %+v: %v", r, err)
		}
		want := resources.Resources{GPUType: gpuType}
		want.CPU, _ = strconv.ParseFloat(cpu, 64)
		want.MemoryMiB, _ = strconv.ParseInt(mem, 0, 64)
		want.DiskGiB, _ = strconv.ParseInt(disk, 0, 64)
		g, _ := strconv.ParseInt(gpu, 0, 0)
		want.GPU = int(g)
		if r != want {
			t.Fatalf("the provider got %+v, the flags said %+v", r, want)
		}
		checkTranslations(t, r)
	})
}

// checkTranslations reads the amounts back out of both translations of r.
func checkTranslations(t *testing.T, r resources.Resources) {
	t.Helper()
	flags := resources.ApptainerFlags(r, resources.ApptainerOptions{ApplyLimits: true})
	for i := 0; i < len(flags); i++ {
		switch flags[i] {
		case "--cpus":
			i++
			if v, err := strconv.ParseFloat(flags[i], 64); err != nil || v != r.CPU {
				t.Fatalf("--cpus %s does not say cpu %v", flags[i], r.CPU)
			}
		case "--memory":
			i++
			n, err := strconv.ParseInt(strings.TrimSuffix(flags[i], "m"), 10, 64)
			if err != nil || n != r.MemoryMiB {
				t.Fatalf("--memory %s does not say memory_mib %d", flags[i], r.MemoryMiB)
			}
			// Apptainer turns it into bytes in an int64.
			if n > math.MaxInt64>>20 {
				t.Fatalf("--memory %s overflows Apptainer's byte count", flags[i])
			}
		}
	}
	for _, a := range resources.SlurmArgs(r, resources.SlurmOptions{}) {
		switch {
		case strings.HasPrefix(a, "--mem="):
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(a, "--mem="), "M"), 10, 64)
			if err != nil || n != r.MemoryMiB {
				t.Fatalf("%s does not say memory_mib %d", a, r.MemoryMiB)
			}
		}
	}
	if c := r.CPUCeil(); r.CPU > 0 && (float64(c) < r.CPU || c < 1) {
		t.Fatalf("cpu %v rounds to %d whole CPUs", r.CPU, c)
	}
}

// FuzzEnvFile feeds parseEnvFile arbitrary --env-file contents. A refusal
// names the file and the line; an accepted file holds only valid names, and
// writing its variables back out as KEY=VALUE lines reads the same again.
func FuzzEnvFile(f *testing.F) {
	f.Add([]byte("# comment\nA=1\n  B = two words \r\nC=x=y\n\nexport D=1\n"))
	f.Add([]byte("KEY\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		env := map[string]string{}
		if err := parseEnvFile("vars.env", data, env); err != nil {
			if !strings.Contains(err.Error(), "vars.env") {
				t.Fatalf("the error does not name the file: %v", err)
			}
			return
		}
		keys := make([]string, 0, len(env))
		for k, v := range env {
			if !validEnvKey(k) {
				t.Fatalf("accepted variable name %q", k)
			}
			if strings.HasSuffix(v, "\r") {
				// A CR that ends a line is taken for a CRLF line end and dropped,
				// so such a value cannot be written back; it is read as given.
				return
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(k + "=" + env[k] + "\n")
		}
		again := map[string]string{}
		if err := parseEnvFile("vars.env", []byte(b.String()), again); err != nil {
			t.Fatalf("the variables written back out do not read: %v\n%q", err, b.String())
		}
		if len(again) != len(env) {
			t.Fatalf("written back out, %d variables read as %d", len(env), len(again))
		}
		for k, v := range env {
			if again[k] != v {
				t.Fatalf("%s=%q read back as %q", k, v, again[k])
			}
		}
	})
}
