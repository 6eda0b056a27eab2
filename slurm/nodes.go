package slurm

import (
	"fmt"
	"strconv"
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

// ExpandHostlist turns SLURM's compressed node list ("node[1-3,5],gpu01")
// into names. ok is false for a list it cannot read (the caller then does
// not judge by it).
func ExpandHostlist(list string) (names []string, ok bool) {
	for _, tok := range splitTop(list) {
		if tok == "" {
			continue
		}
		open := strings.IndexByte(tok, '[')
		if open < 0 {
			names = append(names, tok)
			continue
		}
		end := strings.IndexByte(tok, ']')
		if end < open || strings.ContainsAny(tok[end+1:], "[]") {
			return nil, false // more than one range group: not read
		}
		prefix, suffix := tok[:open], tok[end+1:]
		for _, part := range strings.Split(tok[open+1:end], ",") {
			lo, hi, isRange := strings.Cut(part, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || b < a || b-a > 100000 {
				return nil, false
			}
			for i := a; i <= b; i++ {
				// Zero padding is the width of the low bound ("01-10").
				names = append(names, fmt.Sprintf("%s%0*d%s", prefix, len(lo), i, suffix))
			}
		}
	}
	return names, true
}

// splitTop splits a host list at the commas outside brackets.
func splitTop(list string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(list); i++ {
		switch list[i] {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, list[start:i])
				start = i + 1
			}
		}
	}
	return append(out, list[start:])
}

// inHostlist reports whether node is one of list's; unknown when list
// cannot be read.
func inHostlist(node, list string) (in, known bool) {
	names, ok := ExpandHostlist(list)
	if !ok {
		return false, false
	}
	for _, n := range names {
		if n == node {
			return true, true
		}
	}
	return false, true
}
