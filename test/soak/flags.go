package main

import (
	"flag"
	"fmt"
	"io"
	"time"
)

type options struct {
	cycles, concurrency int
	placement           string
	image               string
	config              string
	binDir              string
	settle              time.Duration
	maxRSSMiB           int
	fdSlack             int
	goroutineSlack      int
	payloadKiB          int
	daemon              bool
	// skipClose and killStarter check the checker: the first cycles leave
	// their sandbox open, or SIGKILL its starter before closing it.
	skipClose, killStarter int
}

func (o options) placements() []string {
	if o.placement == "both" {
		return []string{"local", "slurm"}
	}
	return []string{o.placement}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.cycles, "cycles", 50, "create→exec→upload→download→close cycles per placement")
	fs.IntVar(&o.concurrency, "concurrency", 8, "cycles in flight at once")
	fs.StringVar(&o.placement, "placement", "both", "`local`, slurm or both (local first)")
	fs.StringVar(&o.image, "image", "/var/lib/gym-apptainer/images/busybox.sif", "SIF image of every sandbox")
	fs.StringVar(&o.config, "config", "", "gym config to start from; its state and cache dirs and placement are replaced by the run's (default: examples/sandbox.yaml's semantics without resource limits for local, examples/slurm/gym.yaml for slurm)")
	fs.StringVar(&o.binDir, "bin-dir", "", "directory holding gym-host, gym-apptainer-plugin and gym-apptainer-node (default: go build them into a temp dir)")
	fs.DurationVar(&o.settle, "settle", 30*time.Second, "how long what the cycles started may take to go away after the last close before it counts as leaked")
	fs.IntVar(&o.maxRSSMiB, "max-rss-mib", 100, "the serving plugin's RSS after the run must stay under this")
	fs.IntVar(&o.fdSlack, "fd-slack", 4, "host-side and plugin fds may grow this much over the warm baseline (lazily opened pools) before it counts as a leak")
	fs.IntVar(&o.goroutineSlack, "goroutine-slack", 8, "host-side goroutines may grow this much over the warm baseline before it counts as a leak")
	fs.IntVar(&o.payloadKiB, "payload-kib", 64, "size of the file each cycle uploads and downloads")
	fs.BoolVar(&o.daemon, "daemon", false, "go through a plugin daemon (daemon mode, as gym-host --daemon) instead of a plugin of the host's own; the daemon is stopped at the end and must exit")
	fs.IntVar(&o.skipClose, "skip-close", 0, "checks the leak check: the first `N` measured cycles leave their sandbox open (the run must then fail)")
	fs.IntVar(&o.killStarter, "kill-starter", 0, "fault injection: the `N` measured cycles after those SIGKILL their instance's starter before closing it")
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
	switch o.placement {
	case "local", "slurm", "both":
	default:
		return o, fmt.Errorf("--placement %q: want local, slurm or both", o.placement)
	}
	if o.config != "" && o.placement == "both" {
		return o, fmt.Errorf("--config names one placement's config: pass --placement local or slurm with it")
	}
	for name, v := range map[string]int{"cycles": o.cycles, "concurrency": o.concurrency, "max-rss-mib": o.maxRSSMiB, "payload-kib": o.payloadKiB} {
		if v < 1 {
			return o, fmt.Errorf("--%s must be at least 1", name)
		}
	}
	if o.fdSlack < 0 || o.goroutineSlack < 0 || o.settle < 0 || o.skipClose < 0 || o.killStarter < 0 {
		return o, fmt.Errorf("--fd-slack, --goroutine-slack, --settle, --skip-close and --kill-starter must be >= 0")
	}
	return o, nil
}
