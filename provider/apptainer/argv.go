package apptainer

import (
	"strconv"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
)

// Pure argv builders for the lifecycle commands. Nothing here runs anything,
// so every flag order is table-tested (argv_test.go). The instance
// subcommands themselves (start, stop, list) come from internal/apptainercli,
// which the SLURM node agent shares.

// apptainerArgv is the global prefix of every apptainer command line.
func (p *Provider) apptainerArgv() []string {
	return apptainercli.Global(p.apptainer, p.cfg.Gym.ApptainerConf)
}

// startSpec is everything `instance start` needs, already resolved.
type startSpec struct {
	Staging    string   // host staging dir
	MountPoint string   // where it appears inside
	Binds      []string // exec.default_binds, then the spec's binds
	Resources  []string // flags from resources.ApptainerFlags
	Overlay    string   // overlay image path; empty means --writable-tmpfs
	Extra      []string // create.extra_start_args
	Image      string   // image path or URI as apptainer takes it
	Name       string   // instance name
	// SysBinds keep the node's sysfs read-only (apptainercli.SysBinds of
	// the host the instance starts on); on a SLURM node the holder adds
	// its own.
	SysBinds []string
}

// startArgv builds `instance start`: prefix, the subcommand, startArgs.
func startArgv(prefix []string, s startSpec) []string {
	return apptainercli.Start(prefix, startArgs(s)...)
}

// startArgs are the arguments after `instance start`. Order matters: our
// flags first, then the user's extra_start_args (so that they can add to
// ours), then the two positionals; anything after NAME would go to the
// image's startscript.
func startArgs(s startSpec) []string {
	argv := append(make([]string, 0, 16),
		// --contain: private /tmp and $HOME. Without it they are the host's,
		// shared by every sandbox.
		"--contain",
		// --cleanenv: otherwise the whole environment of whoever started the
		// instance (tokens, go-plugin's certificates) becomes the container's
		// init environment, readable in /proc/1/environ from every exec.
		"--cleanenv",
		// Isolation from the node. Root inside a --userns or --fakeroot
		// sandbox started by root is uid 0 of the host to the sysctl
		// files' permission check: with the host's UTS namespace it could
		// rename the node (kernel.hostname, kernel.domainname), and through
		// /proc/sys it could set any global sysctl (vm.swappiness).
		// --uts and --ipc give the sandbox namespaces of its own (PID is
		// already its own for an instance); /proc/sys is bound read-only
		// over the sandbox's /proc. The network stays the host's: sandboxes
		// need it.
		"--uts", "--ipc",
		"--bind", "/proc/sys:/proc/sys:ro")
	argv = append(argv, apptainercli.BindFlags(s.SysBinds)...)
	argv = append(argv, "--bind", s.Staging+":"+s.MountPoint)
	for _, b := range s.Binds {
		argv = append(argv, "--bind", b)
	}
	argv = append(argv, s.Resources...)
	if s.Overlay != "" {
		argv = append(argv, "--overlay", s.Overlay)
	} else {
		argv = append(argv, "--writable-tmpfs")
	}
	argv = append(argv, s.Extra...)
	return append(argv, s.Image, s.Name)
}

// overlayCreateArgv creates a sparse ext3 overlay image of sizeMiB.
func overlayCreateArgv(prefix []string, sizeMiB int64, path string) []string {
	return append(cloneArgv(prefix), "overlay", "create", "--sparse", "--size", strconv.FormatInt(sizeMiB, 10), path)
}

// versionArgv prints the bare version ("1.4.5").
func versionArgv(prefix []string) []string {
	return append(cloneArgv(prefix), "version")
}

// buildcfgArgv prints apptainer's build configuration (KEY=VALUE lines).
func buildcfgArgv(prefix []string) []string {
	return append(cloneArgv(prefix), "buildcfg")
}

// cloneArgv copies s with room to append, so that no builder ever writes into
// its caller's prefix.
func cloneArgv(s []string) []string {
	return append(make([]string, 0, len(s)+16), s...)
}
