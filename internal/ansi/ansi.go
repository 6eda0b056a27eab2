// Package ansi removes terminal escape sequences from text: apptainer colours
// its ERROR lines even with --nocolor and stderr redirected to a file, and
// that text ends up in error messages, JSON and logs.
//
// It does no work at init (no regexp): the SLURM node agent imports it and
// must start fast on every exec.
package ansi

import "strings"

// Strip removes CSI sequences (ESC [ parameters... final byte @..~, such as
// ESC[91m and ESC[?25l) and two-byte escapes (ESC and one byte). An escape
// cut short at the end of s is dropped with what follows it.
func Strip(s string) string {
	if !strings.Contains(s, "\x1b") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != 0x1b {
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '[' {
			// CSI: parameters and intermediates up to a final byte @..~.
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		i++ // a two-byte escape
	}
	return b.String()
}
