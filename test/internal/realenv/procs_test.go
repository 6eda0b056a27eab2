package realenv

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStarterName(t *testing.T) {
	tests := []struct {
		cmdline string
		name    string
		ok      bool
	}{
		{"Apptainer instance: root [gym-1234]", "gym-1234", true},
		{"Apptainer instance: tester [a]", "a", true},
		{"Apptainer runtime parent: ", "", false},
		{"Apptainer instance: root gym-1234", "", false},
		{"sleep 40", "", false},
	}
	for _, tt := range tests {
		name, ok := StarterName(tt.cmdline)
		assert.Equal(t, tt.ok, ok, tt.cmdline)
		assert.Equal(t, tt.name, name, tt.cmdline)
	}
}

func TestInstanceTree(t *testing.T) {
	procs := map[int]Proc{
		1:  {PID: 1, PPID: 0, State: 'S', Cmdline: "init"},
		10: {PID: 10, PPID: 1, State: 'S', Cmdline: "Apptainer instance: root [a]"},
		11: {PID: 11, PPID: 10, State: 'S', Cmdline: "appinit"},
		12: {PID: 12, PPID: 11, State: 'S', Cmdline: "sleep 1"},
		13: {PID: 13, PPID: 10, State: 'S', Cmdline: "/usr/bin/squashfuse_ll"},
		20: {PID: 20, PPID: 1, State: 'S', Cmdline: "Apptainer instance: root [b]"},
		21: {PID: 21, PPID: 20, State: 'S', Cmdline: "appinit"},
		30: {PID: 30, PPID: 1, State: 'Z', Cmdline: "Apptainer instance: root [c]"},
	}
	var pids []int
	for _, p := range InstanceTree(procs, "a") {
		pids = append(pids, p.PID)
	}
	assert.ElementsMatch(t, []int{10, 11, 12, 13}, pids)
	assert.Empty(t, InstanceTree(procs, "c"), "a zombie starter holds nothing")
	assert.Empty(t, InstanceTree(procs, "nosuch"))
}
