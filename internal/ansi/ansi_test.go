package ansi

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStrip(t *testing.T) {
	cases := map[string]string{
		"plain":                                      "plain",
		"\x1b[91mERROR  : boom\n\x1b[0m":             "ERROR  : boom\n",
		"a\x1b[1;31mb\x1b[0mc":                       "abc",
		"\x1b[?25lhidden\x1b[?25h":                   "hidden",
		"two-byte \x1bcreset":                        "two-byte reset",
		"cut \x1b[91":                                "cut ",
		"trailing \x1b":                              "trailing ",
		"FATAL:   While checking container: no such": "FATAL:   While checking container: no such",
	}
	for in, want := range cases {
		assert.Equal(t, want, Strip(in), "%q", in)
	}
}
