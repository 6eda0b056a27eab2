// Package shellquote renders words as POSIX shell source. It is a leaf: no
// imports of ours and no work at init.
package shellquote

import "strings"

// Join renders argv as one POSIX shell command line that splits back into
// exactly these words, whatever bytes they hold. A word made only of
// characters no shell treats specially stays bare (readable in squeue,
// scontrol and logs); any other word, and the empty word, is single-quoted,
// and a single quote inside it becomes quote, backslash, quote, quote (close,
// escaped quote, reopen).
func Join(argv []string) string {
	var b strings.Builder
	for i, w := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		writeWord(&b, w)
	}
	return b.String()
}

func writeWord(b *strings.Builder, w string) {
	if w != "" && strings.IndexFunc(w, needsQuote) < 0 {
		b.WriteString(w)
		return
	}
	b.WriteByte('\'')
	b.WriteString(strings.ReplaceAll(w, "'", `'\''`))
	b.WriteByte('\'')
}

// needsQuote reports a rune outside the set that is literal in every
// position of a POSIX shell word. '=' and '@' are in the set but '~' is not
// (a leading ~ expands), nor '#' (a leading # starts a comment).
func needsQuote(c rune) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return false
	}
	return !strings.ContainsRune("_-./:,+=@%", c)
}
