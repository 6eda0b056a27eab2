package apptainer

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Stderr texts below are copied from apptainer 1.4.5 runs, colour codes
// included.
const (
	stderrCapExec = "\x1b[91mERROR  : Requesting capability set 0x000001ffffffffff while permitted capability set is 0x000001fffeffffff\n\x1b[0m"

	stderrCapStart = "INFO:    Instance stats will not be available - cannot use systemd cgroups manager, systemd not running as init on this host\n" +
		"\x1b[91mERROR  : Requesting capability set 0x000001ffffffffff while permitted capability set is 0x000001fffeffffff\n\x1b[0m" +
		"FATAL:   while executing starter: failed to start instance: while running /usr/local/libexec/apptainer/bin/starter: exit status 1\n"

	stderrSystemd = "ERROR:   container cleanup failed: no instance found with name rl2\n" +
		"FATAL:   container creation failed: while applying cgroups config: cannot use cgroups - cannot use systemd cgroups manager, systemd not running as init on this host\n\n" +
		"FATAL:   while executing starter: failed to start instance: while running /usr/local/libexec/apptainer/bin/starter: exit status 255\n"

	stderrV1Rootless = "FATAL:   container creation failed: while applying cgroups config: cannot use cgroups - system is not configured for cgroups v2 in unified mode\n"

	stderrSubuid = "INFO:    Instance stats will not be available - cannot use systemd cgroups manager, systemd not running as init on this host\n" +
		"INFO:    gocryptfs not found, will not be able to use gocryptfs\n" +
		"FATAL:   could not use fakeroot: no mapping entry found in /etc/subuid for root\n\n" +
		"FATAL:   while executing starter: failed to start instance: while running /usr/local/libexec/apptainer/bin/starter: exit status 255\n"

	stderrFuse = "FATAL:   container creation failed: image driver mount failure: image driver squashfuse_ll instance exited with error: squashfuse_ll exited: fuse: failed to open /dev/fuse: Permission denied\n" +
		"ERROR:   container cleanup failed: no instance found with name tu1\n" +
		"FATAL:   while executing starter: failed to start instance: while running /usr/local/libexec/apptainer/bin/starter: exit status 255\n"

	stderrStopMissing = "Error for command \"stop\": no instance found\n\n"

	stderrExecMissing = "FATAL:   While setting image/instance: no instance found with name nosuch\n"

	stderrExists = "INFO:    Instance stats will not be available - cannot use systemd cgroups manager, systemd not running as init on this host\n" +
		"FATAL:   instance u2 already exists\n"

	stderrStartOK = "INFO:    Instance stats will not be available - cannot use systemd cgroups manager, systemd not running as init on this host\n" +
		"INFO:    gocryptfs not found, will not be able to use gocryptfs\n" +
		"INFO:    instance started successfully\n"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name    string
		stderr  string
		want    string   // exact message, when set
		has     []string // substrings, otherwise
		hasNot  []string
		noFix   bool
		isNoIns bool
	}{
		{
			name:   "capability error on exec: ANSI stripped, fix is --userns",
			stderr: stderrCapExec,
			want: "ERROR: Requesting capability set 0x000001ffffffffff while permitted capability set is 0x000001fffeffffff" +
				` (fix: this shell's capability bounding set lacks CAP_SYS_RESOURCE, so root-mode apptainer cannot start containers; set create.extra_start_args: ["--userns"])`,
		},
		{
			name:   "capability error on start: INFO dropped, both error lines kept",
			stderr: stderrCapStart,
			has: []string{
				"ERROR: Requesting capability set",
				"; FATAL: while executing starter: failed to start instance",
				`create.extra_start_args: ["--userns"]`,
			},
			hasNot: []string{"INFO", "Instance stats", "\x1b"},
		},
		{
			name:   "systemd cgroups: fix names gym.apptainer_conf and apply_resource_limits",
			stderr: stderrSystemd,
			has: []string{
				"FATAL: container creation failed: while applying cgroups config",
				"gym.apptainer_conf", `"systemd cgroups = no"`, "create.apply_resource_limits: false",
			},
			hasNot: []string{"instance is gone"},
		},
		{
			name:   "rootless on cgroup v1",
			stderr: stderrV1Rootless,
			has:    []string{"cgroups v2 in unified mode", "create.apply_resource_limits: false", "SLURM"},
		},
		{
			name:   "fakeroot without subuid: the line to add names the user",
			stderr: stderrSubuid,
			has:    []string{"FATAL: could not use fakeroot", `"root:100000:65536"`, "/etc/subuid and /etc/subgid"},
			hasNot: []string{"gocryptfs", "systemd"},
		},
		{
			name:   "no /dev/fuse for SIF: sandbox dir or --unsquash, not 'instance gone'",
			stderr: stderrFuse,
			has:    []string{"/dev/fuse: Permission denied", "sandbox directory", "--unsquash"},
			hasNot: []string{"instance is gone"},
		},
		{
			name:    "stop of a missing instance",
			stderr:  stderrStopMissing,
			want:    `Error for command "stop": no instance found (fix: the sandbox's instance is gone (stopped, killed, or never started); close the sandbox and create a new one)`,
			isNoIns: true,
		},
		{
			name:    "exec into a missing instance",
			stderr:  stderrExecMissing,
			has:     []string{"FATAL: While setting image/instance: no instance found with name nosuch", "instance is gone"},
			isNoIns: true,
		},
		{
			name:   "unknown failure: lines kept, no fix",
			stderr: stderrExists,
			want:   "FATAL: instance u2 already exists",
			noFix:  true,
		},
		{
			name:   "only INFO lines: nothing to report",
			stderr: stderrStartOK,
			want:   "apptainer printed no error message",
			noFix:  true,
		},
		{
			name:   "no level tags: the text itself",
			stderr: "starter: something odd\n\n",
			want:   "starter: something odd",
			noFix:  true,
		},
		{
			name:   "empty",
			stderr: "",
			want:   "apptainer printed no error message",
			noFix:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.stderr)
			if tt.want != "" {
				assert.Equal(t, tt.want, got)
			}
			for _, s := range tt.has {
				assert.Contains(t, got, s)
			}
			for _, s := range tt.hasNot {
				assert.NotContains(t, got, s)
			}
			if tt.noFix {
				assert.NotContains(t, got, "(fix:")
			}
			assert.Equal(t, tt.isNoIns, isNoInstance(tt.stderr), "isNoInstance")
		})
	}
}

func TestClassifyBoundsLength(t *testing.T) {
	got := classify("FATAL:   " + strings.Repeat("x", 10000))
	assert.Less(t, len(got), maxClassified+100)
}
