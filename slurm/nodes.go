package slurm

import (
	"fmt"
	"strings"
)

// SinfoNodesFormat is the node line SinfoNodesArgv asks for: name, long
// state (with SLURM's flag suffixes, "down*"), reason. The reason is free
// text and comes last, so a '|' in it stays in it.
const SinfoNodesFormat = "%N|%T|%E"

// SinfoNodesArgv lists every node, one SinfoNodesFormat line per node and
// partition, no header.
func SinfoNodesArgv() []string {
	return []string{"sinfo", "-h", "-N", "-o", SinfoNodesFormat}
}

// NodeInfo is one node as sinfo shows it.
type NodeInfo struct {
	Name   string
	State  string // sinfo's long state: "idle", "mixed", "down*", "drained", ...
	Reason string // the admin's or slurmctld's reason; "" for none
}

// ParseSinfoNodes reads SinfoNodesFormat lines into nodes by name (a node
// in several partitions is listed once per partition, the same each time).
func ParseSinfoNodes(out []byte) (map[string]NodeInfo, error) {
	nodes := map[string]NodeInfo{}
	err := eachLine(out, func(n int, line string) error {
		f := strings.SplitN(line, "|", 3)
		if len(f) < 3 || f[0] == "" || f[1] == "" {
			return fmt.Errorf("parse sinfo output line %d: want 3 '|'-separated fields (%s), got %q", n, SinfoNodesFormat, line)
		}
		reason := strings.TrimSpace(f[2])
		if reason == "none" || reason == "(null)" {
			reason = ""
		}
		nodes[f[0]] = NodeInfo{Name: f[0], State: f[1], Reason: reason}
		return nil
	})
	return nodes, err
}

// nodeFlags are the suffixes sinfo appends to a state: '*' not responding,
// '~' powered off, '#' powering up, '%' powering down, '!' pending power
// down, '$' maintenance, '@' pending reboot, '^' rebooting, '-' planned.
const nodeFlags = "*~#%!$@^-"

// baseState is the state without sinfo's flag suffixes.
func (n NodeInfo) baseState() string { return strings.TrimRight(n.State, nodeFlags) }

// NotResponding reports whether slurmctld has lost touch with the node's
// slurmd (sinfo's '*').
func (n NodeInfo) NotResponding() bool { return strings.Contains(n.State, "*") }

// Down reports whether the node is DOWN: marked so by an admin or a health
// check, or by slurmctld after SlurmdTimeout without an answer. Jobs on a
// DOWN node are over (NODE_FAIL), and steps of a --no-kill allocation on it
// are killed.
func (n NodeInfo) Down() bool { return n.baseState() == "down" }

// Failed reports whether the node's sandboxes are to be taken for lost:
// it is down, or slurmctld cannot reach it.
func (n NodeInfo) Failed() bool { return n.Down() || n.NotResponding() }

// Describe is "node node2 DOWN: <reason>" or "node node2 not responding".
func (n NodeInfo) Describe() string {
	var s string
	switch {
	case n.Down():
		s = "node " + n.Name + " DOWN"
	case n.NotResponding():
		s = "node " + n.Name + " not responding"
	default:
		s = "node " + n.Name + " " + n.State
	}
	if n.Reason != "" {
		s += ": " + n.Reason
	}
	return s
}

// inHostlist reports whether node is one of list's; unknown when list
// cannot be read.
func inHostlist(node, list string) (in, known bool) {
	names, err := ExpandHostlist(list)
	if err != nil {
		return false, false
	}
	for _, n := range names {
		if n == node {
			return true, true
		}
	}
	return false, true
}
