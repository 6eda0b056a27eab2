package main

import (
	"flag"
	"fmt"
	"io"
	"time"
)

type options struct {
	n, nCreate, nClose, nCLI, nBreak int
	nLoop                            int
	warmup                           int
	json                             bool
	binDir                           string
	image                            string
	apptainer                        string
	pluginLog                        string
	// slurm adds the SLURM section (slurm_*.go); only picks one side.
	slurm            bool
	only             string
	nSlurmExec       int
	nSlurmCreate     int
	nSlurmStatus     int
	slurmConfig      string
	slurmIdleTimeout int
	slurmSettle      time.Duration
	scale            scaleOptions
}

// runLocal, runSlurm and runScale say which sections run. The scale
// section runs only on its own: it loads the cluster for minutes.
func (o options) runLocal() bool { return o.only == "" || o.only == "local" }
func (o options) runSlurm() bool { return o.slurm || o.only == "slurm" }
func (o options) runScale() bool { return o.only == "scale" }

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.n, "n", 50, "exec pairs (ours via a long-lived plugin.Host, raw apptainer exec)")
	fs.IntVar(&o.nCreate, "n-create", 10, "create-to-ready pairs")
	fs.IntVar(&o.nClose, "n-close", 5, "close pairs (raw is a plain instance stop, ~1.5 s each)")
	fs.IntVar(&o.nCLI, "n-cli", 30, "CLI invocation pairs (gym-host exec process vs raw apptainer exec)")
	fs.IntVar(&o.nBreak, "n-breakdown", 10, "samples of each CLI breakdown step")
	fs.IntVar(&o.nLoop, "n-loop", 1000, "gym-host exec calls in each shell loop (daemon mode vs the same loop of raw apptainer exec)")
	fs.IntVar(&o.warmup, "warmup", 3, "untimed warm-up pairs before the exec and CLI sections (1 for create)")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of a table")
	fs.StringVar(&o.binDir, "bin-dir", "", "directory holding gym-host and gym-apptainer-plugin (default: go build them into a temp dir)")
	fs.StringVar(&o.image, "image", "/var/lib/gym-apptainer/images/busybox.sif", "SIF image for every sandbox")
	fs.StringVar(&o.apptainer, "apptainer", "apptainer", "apptainer binary for the raw side (the plugin finds its own on PATH)")
	fs.StringVar(&o.pluginLog, "plugin-log", "", "write host and plugin logs at debug level to this `FILE` (slows the plugin a little; for profiling; the SLURM section writes FILE.slurm)")
	fs.BoolVar(&o.slurm, "slurm", false, "also run the SLURM section (needs the cluster of scripts/slurm-cluster.sh up)")
	fs.StringVar(&o.only, "only", "", "run only this section: `local`, slurm or scale (scale_*.go; needs the cluster)")
	fs.IntVar(&o.nSlurmExec, "n-slurm-exec", 30, "SLURM exec pairs (ours via a long-lived plugin.Host, raw srun --overlap apptainer exec)")
	fs.IntVar(&o.nSlurmCreate, "n-slurm-create", 5, "SLURM create-to-ready pairs (each side on an idle node)")
	fs.IntVar(&o.nSlurmStatus, "n-slurm-status", 5, "SLURM status calls per sandbox count whose slurm commands are counted")
	fs.StringVar(&o.slurmConfig, "slurm-config", "", "gym config the SLURM section starts from (default: examples/slurm/gym.yaml of the module)")
	fs.IntVar(&o.slurmIdleTimeout, "slurm-idle-timeout", 120, "seconds to wait for the node to be idle before each create")
	fs.DurationVar(&o.slurmSettle, "slurm-settle", 0, "untimed pause before each SLURM exec arm (0: back to back, as a harness runs commands; a pause lets the previous srun step finish tearing down, but every process of our chain then starts from idle, which costs it ~2.5 ms on a 2-vCPU VM)")
	o.scale.register(fs)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fs.SetOutput(nil)
			fs.PrintDefaults()
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch o.only {
	case "", "local", "slurm", "scale":
	default:
		return o, fmt.Errorf("--only %q: want local, slurm or scale", o.only)
	}
	if o.only == "scale" && o.slurm {
		return o, fmt.Errorf("--slurm and --only scale contradict each other")
	}
	if err := o.scale.check(); err != nil {
		return o, err
	}
	if o.only == "local" && o.slurm {
		return o, fmt.Errorf("--slurm and --only local contradict each other")
	}
	for name, v := range map[string]int{"n": o.n, "n-create": o.nCreate, "n-close": o.nClose, "n-cli": o.nCLI, "n-breakdown": o.nBreak, "n-loop": o.nLoop,
		"n-slurm-exec": o.nSlurmExec, "n-slurm-create": o.nSlurmCreate, "n-slurm-status": o.nSlurmStatus, "slurm-idle-timeout": o.slurmIdleTimeout} {
		if v < 1 {
			return o, fmt.Errorf("--%s must be at least 1", name)
		}
	}
	if o.slurmSettle < 0 {
		return o, fmt.Errorf("--slurm-settle must be >= 0")
	}
	if o.warmup < 0 {
		return o, fmt.Errorf("--warmup must be >= 0")
	}
	return o, nil
}
