package apptainer

import (
	"regexp"
	"strings"
	"testing"
)

var (
	execIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	envKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

var tokenCases = []string{
	"", "a", "A", "0", "_", ".", "-", "a.b", "a_b", "a-b", "-a", ".a", "_a", "a b", "a/b", "a\n", "a\x00",
	"PATH", "_X", "X1", "1X", "é", "a$", "7c9e6679-7425-40de-944b-e07fc1f90ae7",
	strings.Repeat("a", 127), strings.Repeat("a", 128), strings.Repeat("a", 129),
}

func TestValidExecIDMatchesItsPattern(t *testing.T) {
	for _, s := range tokenCases {
		if got, want := validExecID(s), execIDPattern.MatchString(s); got != want {
			t.Errorf("validExecID(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}

func TestValidEnvKeyMatchesItsPattern(t *testing.T) {
	for _, s := range tokenCases {
		if got, want := validEnvKey(s), envKeyPattern.MatchString(s); got != want {
			t.Errorf("validEnvKey(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}

func FuzzTokensMatchTheirPatterns(f *testing.F) {
	for _, s := range tokenCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validExecID(s), execIDPattern.MatchString(s); got != want {
			t.Errorf("validExecID(%q) = %v, the pattern says %v", s, got, want)
		}
		if got, want := validEnvKey(s), envKeyPattern.MatchString(s); got != want {
			t.Errorf("validEnvKey(%q) = %v, the pattern says %v", s, got, want)
		}
	})
}
