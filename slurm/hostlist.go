package slurm

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// One reader of SLURM's compressed host lists, for everyone who reads a
// job's or step's node list: spreading an allocation's sandboxes, packing a
// pool, judging a node that left a --no-kill allocation.

// maxHosts bounds an expanded host list (a typo like node[1-99999999] must
// not eat the memory).
const maxHosts = 1 << 16

// ExpandHostlist expands a SLURM host list as squeue's %N prints it
// ("node[1-3,7],gpu[01-02]", "rack[1-2]n[1-4]") into host names, in order.
// Ranges keep the zero padding of their lower bound, as SLURM does.
func ExpandHostlist(s string) ([]string, error) {
	var out []string
	for _, part := range splitTop(s) {
		if part == "" {
			continue
		}
		hosts, err := expandOne(part, maxHosts-len(out))
		if err != nil {
			return nil, fmt.Errorf("host list %q: %w", s, err)
		}
		out = append(out, hosts...)
	}
	return out, nil
}

// splitTop splits s at the commas outside brackets.
func splitTop(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

// expandOne expands one host expression (no top-level comma), at most limit
// names.
func expandOne(s string, limit int) ([]string, error) {
	open := strings.IndexByte(s, '[')
	if open < 0 {
		if strings.ContainsAny(s, "]") {
			return nil, fmt.Errorf("unbalanced ] in %q", s)
		}
		return []string{s}, nil
	}
	end := strings.IndexByte(s[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("unbalanced [ in %q", s)
	}
	end += open
	prefix, ranges, rest := s[:open], s[open+1:end], s[end+1:]
	tails, err := expandOne(rest, limit)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range strings.Split(ranges, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || a < 0 || b < a {
			return nil, fmt.Errorf("bad range %q in %q", r, s)
		}
		if b-a >= limit || (b-a+1)*len(tails) > limit-len(out) {
			return nil, fmt.Errorf("more than %d hosts", maxHosts)
		}
		for n := a; n <= b; n++ {
			num := fmt.Sprintf("%0*d", len(lo), n)
			for _, t := range tails {
				out = append(out, prefix+num+t)
			}
		}
	}
	return slices.Clip(out), nil
}
