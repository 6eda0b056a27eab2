package slurm

import (
	"strconv"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/internal/shellquote"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// JobComment marks every holder job we submit (sbatch --comment), so that an
// admin reading squeue, and gc, can tell our jobs from anyone else's.
const JobComment = "gym-apptainer"

// SqueueFormat is the job line SqueueArgv asks for: id, state, reason, node
// list, name, comment. ParseSqueue reads exactly this.
const SqueueFormat = "%i|%T|%r|%N|%j|%k"

// SqueueStepsFormat is the step line SqueueStepsArgv asks for. The free-text
// name sits between two fields that never hold '|', so ParseSteps can take a
// name containing '|' apart unambiguously.
const SqueueStepsFormat = "%i|%j|%N"

// SbatchArgv submits a holder job for one sandbox:
//
//	sbatch --parsable -J NAME --comment=gym-apptainer --no-requeue [-p P] -N1 <resources>
//	       [-t T] [-A A] [--qos Q] [-C C] <extra_sbatch_args> --export=EXPORT -o LOG --wrap "exec WRAP..."
//
// The resources come from resources.SlurmArgs with the partition's GPU
// style. The wrapped command is shell-quoted word by word and exec'd, so that
// the batch shell is replaced by it: the holder is then the job's main
// process and receives scancel's signals itself. -o is last but for --wrap
// so that an admin's extra args cannot redirect the holder's log, which the
// adapter reads when a create fails. --no-requeue: a holder whose node
// failed must end (NODE_FAIL, the sandbox is lost), not start again on
// another node as an empty sandbox under the same handle. export is ExportArg's: slurmctld stores
// a batch job's environment on its disk, so only that list goes.
func SbatchArgv(p *Partition, r resources.Resources, jobName, logPath, export string, wrap []string) []string {
	argv := []string{"sbatch", "--parsable", "-J", jobName, "--comment=" + JobComment, "--no-requeue"}
	if p.Name != "" {
		argv = append(argv, "-p", p.Name)
	}
	argv = append(argv, "-N1")
	argv = append(argv, resources.SlurmArgs(r, resources.SlurmOptions{GPUStyle: p.GPUStyle})...)
	argv = appendIf(argv, "-t", p.TimeLimit)
	argv = appendIf(argv, "-A", p.Account)
	argv = appendIf(argv, "--qos", p.QOS)
	argv = appendIf(argv, "-C", p.Constraint)
	argv = append(argv, p.ExtraSbatchArgs...)
	argv = append(argv, export)
	script := "exec true"
	if len(wrap) > 0 {
		script = "exec " + shellquote.Join(wrap)
	}
	return append(argv, "-o", logPath, "--wrap", script)
}

// StepArgv starts a sandbox's holder as a job step of an existing allocation
// (allocation mode):
//
//	srun --jobid=J -N1 <resources, in-allocation form> --exact -J NAME -o LOG -e LOG <extra_srun_args> --export=EXPORT CMD...
//
// --exact keeps a step to what it asked for even when no cpu was requested
// (-c already implies it): without it a step is given every CPU of the
// allocation on its node and the next sandbox's step waits for it. The step
// does not pass --overlap, so that holder steps never share CPUs with one
// another; exec steps (OverlapArgv) do overlap them.
func StepArgv(allocJobID string, p *Partition, r resources.Resources, name, logPath, export string, cmd []string) []string {
	argv := []string{"srun", "--jobid=" + allocJobID, "-N1"}
	argv = append(argv, resources.SlurmArgs(r, resources.SlurmOptions{InAllocation: true})...)
	argv = append(argv, "--exact", "-J", name, "-o", logPath, "-e", logPath)
	argv = append(argv, p.ExtraSrunArgs...)
	argv = append(argv, export)
	return append(argv, cmd...)
}

// OverlapArgv runs cmd as a new step of job J on the sandbox's node, beside
// the holder:
//
//	srun --jobid=J --overlap -N1 -n1 [-w NODE] -Q -u <extra_srun_args> --export=EXPORT CMD...
//
// --overlap is required: without it the step waits for the holder's CPUs
// ("step creation temporarily disabled"). -u forwards output as it is
// written instead of line by line, so prompts and binary frames are not
// held back. -Q drops srun's informational lines (its error lines remain;
// the node-exec framing separates those from the command's streams).
func OverlapArgv(jobID, node string, p *Partition, export string, cmd []string) []string {
	argv := []string{"srun", "--jobid=" + jobID, "--overlap", "-N1", "-n1"}
	argv = appendIf(argv, "-w", node)
	argv = append(argv, "-Q", "-u")
	argv = append(argv, p.ExtraSrunArgs...)
	argv = append(argv, export)
	return append(argv, cmd...)
}

// ExportVars are the only variables of this process's environment that a
// holder or a step gets through SLURM (besides SLURM's own SLURM_*): what
// the node agent and apptainer need to run and to find this user's
// instances. sbatch and srun export the caller's whole environment by
// default, and slurmctld stores a batch job's environment in its state
// directory; a caller's variables (tokens, a sandbox's --env values taken
// from the environment) must not end up there. A sandbox's env reaches the
// node in a 0600 file instead (envfile.go).
var ExportVars = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "TMPDIR",
	"APPTAINER_CONFIGDIR", "APPTAINER_CACHEDIR", "APPTAINER_TMPDIR"}

// ExportArg is the --export for every srun (steps and the doctor's probe):
// the names of ExportVars set in env, whose values srun takes from its own
// environment (names alone: a value holding a comma would split the list),
// or NONE when none is set. sbatch takes SubmitExport instead: for sbatch
// any list but ALL also sets SLURM_GET_USER_ENV=1 (measured on 22.05), and
// slurmd's load of the user's login environment then delays each launch.
func ExportArg(env []string) string {
	var names []string
	for _, name := range ExportVars {
		if _, ok := lookupOK(env, name); ok {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "--export=NONE"
	}
	return "--export=" + strings.Join(names, ",")
}

// SubmitExport is sbatch's --export: all of sbatch's own environment,
// which SubmitEnv has cut down to ExportVars (and SLURM_* inputs that say
// which cluster), so nothing else is stored with the job. A list would do
// the same but also set SLURM_GET_USER_ENV, whose login-environment load on
// the node delays every holder's start.
const SubmitExport = "--export=ALL"

// SubmitEnv is env cut down to what a holder job may carry: ExportVars and
// the SLURM_CONF that names the cluster.
func SubmitEnv(env []string) []string {
	keep := map[string]bool{"SLURM_CONF": true}
	for _, n := range ExportVars {
		keep[n] = true
	}
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if keep[k] {
			out = append(out, kv)
		}
	}
	return out
}

// HolderArgv is the holder's command line for one sandbox:
//
//	PLUGIN holder --ready FILE --name NAME --enforce E --apptainer BIN [--apptainer-conf CONF]
//	       [--memory-mib N] [--cpus C] -- START_ARGS...
//
// The holder starts `BIN [-c CONF] instance start START_ARGS...` and checks
// that the instance's cgroup holds it to the plan's memory (N, the filled
// request), whatever the enforcement mode, and to its cpus (C) where
// apptainer applies them.
func HolderArgv(plugin, readyPath, linkPath, enforce string, spec placement.StartSpec) []string {
	argv := []string{plugin, "holder", "--ready", readyPath, "--name", spec.Instance, "--enforce", enforce,
		"--apptainer", spec.Apptainer}
	argv = appendIf(argv, "--apptainer-conf", spec.Plan.ApptainerConf)
	argv = appendIf(argv, "--link", linkPath)
	if m := spec.Plan.Resources.MemoryMiB; m > 0 {
		argv = append(argv, "--memory-mib", strconv.FormatInt(m, 10))
	}
	if c := spec.Plan.Resources.CPU; c > 0 {
		argv = append(argv, "--cpus", strconv.FormatFloat(c, 'f', -1, 64))
	}
	argv = append(argv, "--")
	return append(argv, spec.StartArgs...)
}

// ScancelArgv cancels jobs or steps ("J" or "J.S"). On SLURM 22.05 scancel of
// a finished or unknown job id prints nothing and exits 0; an unknown step
// exits non-zero ("Invalid job id specified"), which IsInvalidJobID detects.
func ScancelArgv(ids ...string) []string {
	return append([]string{"scancel"}, ids...)
}

// SqueueArgv lists every job of user that slurmctld still remembers
// (finished ones for MinJobAge), one SqueueFormat line each, no header.
func SqueueArgv(user string) []string {
	return []string{"squeue", "-h", "-t", "all", "-u", user, "-o", SqueueFormat}
}

// SqueueStepsArgv lists every running step of user's jobs (including the
// "J.batch" step of each batch job), one SqueueStepsFormat line each.
func SqueueStepsArgv(user string) []string {
	return []string{"squeue", "-h", "-s", "-u", user, "-o", SqueueStepsFormat}
}

// ScontrolJobArgv shows one job, finished or not, while slurmctld remembers
// it; afterwards it fails with "Invalid job id specified".
func ScontrolJobArgv(id string) []string {
	return []string{"scontrol", "show", "job", id}
}

func appendIf(argv []string, flag, value string) []string {
	if value == "" {
		return argv
	}
	return append(argv, flag, value)
}
