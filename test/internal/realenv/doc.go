// Package realenv is what the programs that drive the real apptainer and
// SLURM cluster (the benchmark, the soak) share: private dirs and configs,
// built binaries, an environment isolated from the caller's job, and the
// process, job and instance views their cleanups and leak checks read.
package realenv
