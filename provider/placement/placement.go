// Package placement holds the seam between the Apptainer provider and where
// its sandboxes run. The provider builds every apptainer argv; a Placement
// decides where it runs (here, or on a compute node through srun). It is a
// leaf package so that slurm/ can implement it without importing the
// provider.
package placement

import (
	"context"
	"net"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/reap"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// Placement runs a sandbox's commands where the sandbox lives.
type Placement interface {
	// Name is recorded in handles ("local", "slurm").
	Name() string
	// Runner runs commands for the sandbox h (h is nil for commands that
	// belong to no sandbox, such as image conversion or doctor checks).
	Runner(h *handles.Handle) runner.Runner
	// Reaper kills an exec's processes where the sandbox runs.
	Reaper(h *handles.Handle) reap.Reaper
}

// Lifecycle is implemented by placements that own where instances live and
// what keeps them alive (slurm: a holder job or step per sandbox). For a
// placement without it, the provider starts, stops and lists instances
// itself through the placement's Runner.
type Lifecycle interface {
	Placement
	// Plan decides, once and before anything is allocated, where a sandbox
	// with these resources goes and how its limits are enforced, and fills
	// the request with the placement's defaults (Plan.Resources). A request
	// that nothing can satisfy is an error wrapping provider.ErrInvalid that
	// names the limit.
	Plan(r resources.Resources) (Plan, error)
	// Start starts the sandbox's instance as spec says and returns once it
	// runs, recording where in h (JobID, StepID, Node, Extra). Its
	// allocation is sized from spec.Plan.Resources, the same value the
	// instance's flags were built from. On error nothing it started is
	// left.
	Start(ctx context.Context, h *handles.Handle, spec StartSpec) error
	// Stop ends the sandbox (its instance, h.Instance, and whatever holds
	// it). A sandbox already gone is success.
	Stop(ctx context.Context, h *handles.Handle) error
	// States reports the state of many sandboxes with a constant number of
	// queries. Sandboxes missing from the map are unknown.
	States(ctx context.Context, hs []*handles.Handle) (map[string]provider.Status, error)
	// Leaked lists the gym sandboxes the placement can see whose instance
	// name is not in known (the instance names of the handles here), with
	// Status.Instance set to that name. Whose they are (ours: leaked, or
	// another owner's) is the provider's call, from the name's owner tag.
	Leaked(ctx context.Context, known map[string]bool) ([]provider.Status, error)
}

// Plan is where a sandbox goes and how it is limited. It is made once per
// sandbox: everything that sizes the sandbox (the allocation, apptainer's
// flags, the holder's check of the instance's cgroup) is derived from its
// Resources.
type Plan struct {
	// Resources is the request filled with the placement's defaults (a
	// partition's default cpu and memory): the sandbox's limits.
	Resources resources.Resources
	// Partition is the SLURM partition ("" for local).
	Partition string
	// StagingRoot overrides the provider's staging root (storage the compute
	// nodes see); "" keeps it.
	StagingRoot string
	// ApplyLimits puts --cpus/--memory on instance start.
	ApplyLimits bool
	// ApptainerConf is passed as `apptainer -c FILE` for this sandbox's
	// commands; "" means apptainer's own config. Recorded in the handle.
	ApptainerConf string
	// ImageCacheDir overrides the provider's cache directory (storage the
	// compute nodes see) for images this sandbox converts; "" keeps it.
	ImageCacheDir string
}

// StartSpec is what a Lifecycle needs to start one sandbox's instance,
// built by the provider from the sandbox's one Plan.
type StartSpec struct {
	// Plan is the sandbox's plan; its Resources size the allocation and
	// are what the instance's limits must not exceed.
	Plan Plan
	// Instance is the instance's name.
	Instance string
	// Apptainer is the apptainer binary. Its global options are derived
	// from the plan (ApptainerConf), never from StartArgs.
	Apptainer string
	// StartArgs are the arguments after `apptainer [-c CONF] instance
	// start`, ending with the image and Instance, built by the provider
	// (their --cpus/--memory/--nv from Plan.Resources). The placement passes
	// them on unread.
	StartArgs []string
	// Executor, when set, asks the placement to start the sandbox's
	// executor with the instance and to make it reachable without a
	// command per exec (slurm: through the holder; see ExecutorDialer).
	Executor *ExecutorStart
}

// ExecutorLinker is implemented by placements whose sandboxes' executors
// are not reached through the staging dir's unix socket on this host
// (slurm: through the sandbox's holder on its node). An error means there
// is no link: the provider then runs the command the old way and says why.
type ExecutorLinker interface {
	ExecutorDialer(h *handles.Handle) (func(context.Context) (net.Conn, error), error)
}

// ExecutorStart is how to start a sandbox's executor where its instance
// runs, built by the provider.
type ExecutorStart struct {
	// Argv starts the executor inside the instance; it runs as long as the
	// instance does.
	Argv []string
	// Socket is the executor's unix socket on the node (the staging dir is
	// at the same path there).
	Socket string
}

// Doctor is implemented by placements that can check their own setup
// (slurm: its commands, the controller, the partitions, storage shared with
// the compute nodes, whether each partition's limits can be enforced). The
// provider's doctor adds these results to its own.
type Doctor interface {
	// Doctor runs the placement's checks. Each result says what was found
	// and, when not ok, what to do; a ctx that ends cuts the checks short.
	Doctor(ctx context.Context, env DoctorEnv) []provider.CheckResult
}

// DoctorEnv is what the provider knows that a placement's checks need.
type DoctorEnv struct {
	// StagingRoot is the provider's staging root, used by sandboxes whose
	// plan has none of its own.
	StagingRoot string
	// Apptainer is the apptainer binary.
	Apptainer string
	// DefaultApptainerConf is apptainer's own apptainer.conf (`apptainer
	// buildcfg`'s APPTAINER_CONF_FILE), used by sandboxes whose plan names
	// none; "" when it could not be found.
	DefaultApptainerConf string
}
