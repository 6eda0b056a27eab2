package shellquote

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestJoin(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{[]string{"plain", "/a/b.sif", "--x=1", "a,b:c@d%e+f"}, "plain /a/b.sif --x=1 a,b:c@d%e+f"},
		{[]string{""}, "''"},
		{[]string{"it's"}, `'it'\''s'`},
		{[]string{"a b", "$HOME", "~", "#c", "x;y", "*"}, `'a b' '$HOME' '~' '#c' 'x;y' '*'`},
		{nil, ""},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Join(tt.in), "%q", tt.in)
	}
}

// TestJoinRoundTripsThroughSh is the property that matters: whatever
// the words, /bin/sh splits the quoted line back into exactly them.
func TestJoinRoundTripsThroughSh(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	var all []byte
	for b := 1; b < 256; b++ {
		all = append(all, byte(b))
	}
	words := []string{
		"", " ", "it's", `"double"`, `back\slash`, "$HOME", "${X:-y}", "`id`", "$(id)", "a\nb", "tab\there",
		"'", "''", `'\''`, "*", "?", "[a]", "~", "~root", "#not a comment", "a;b", "a&&b", "a|b", "<in", ">out",
		"!", "{a,b}", "-n", "--", "=", "ü日本", "\x01\x7f\xff", string(all),
	}
	script := "for w in " + Join(words) + "; do printf '%s\\0' \"$w\"; done"
	out, err := exec.Command(sh, "-c", script).Output()
	require.NoError(t, err)
	got := strings.Split(string(bytes.TrimSuffix(out, []byte{0})), "\x00")
	assert.Equal(t, words, got)

	// And as a holder's --wrap: "exec WORDS" runs the program with exactly
	// these arguments.
	line := "exec " + Join(append([]string{"printf", `%s\0`}, words...))
	out, err = exec.Command(sh, "-c", line).Output()
	require.NoError(t, err)
	assert.Equal(t, words, strings.Split(string(bytes.TrimSuffix(out, []byte{0})), "\x00"))
}
