package executor

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var jsonStrings = []string{"", "a", "1.4.5", "exec-1", "a b", `q"uote`, `back\slash`, "tab\t", "nl\n", "nul\x00",
	"<html>&", "é", "\xff\xfe", "\u2028", "/bin/sh", `printf '\036gym:started\037' >&2; eval "$1"`}

// roundTrip encodes v by hand and checks that encoding/json reads it as
// it reads its own encoding of v (invalid UTF-8 becomes U+FFFD in both),
// and, for plain strings, that the bytes are encoding/json's own.
func roundTrip[T interface {
	jsonAppender
	comparable
}](t *testing.T, v T, plain bool) {
	t.Helper()
	got := v.appendJSON(nil)
	var back, want T
	require.NoError(t, json.Unmarshal(got, &back), "%s", got)
	own, err := json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(own, &want))
	assert.Equal(t, want, back, "%s", got)
	if plain {
		assert.Equal(t, string(own), string(got))
	}
}

func TestWireJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range jsonStrings {
		plain := s == "" || s == "a" || s == "1.4.5" || s == "exec-1" || s == "a b" || s == "/bin/sh"
		roundTrip(t, wireHello{Proto: 1, Version: s, PID: 42, Window: stdinWindow}, plain)
		roundTrip(t, wireHello{Proto: 1, Version: s, PID: 1, Window: 0, KeepAlive: true}, plain)
		roundTrip(t, wireStarted{PID: 7, ExecID: s}, plain)
		roundTrip(t, wireExit{ExitCode: -1, StartErr: s}, plain)
		roundTrip(t, wireExit{ExitCode: 137, TimedOut: true, Killed: s}, plain)
		roundTrip(t, wireExit{}, true)
	}
	reqs := []wireRequest{
		{Proto: 1, Op: opPing},
		{Proto: 1, Op: opExec, Argv: []string{"/bin/sh", "-c", jsonStrings[15], "sh", "true"},
			Env: map[string]string{"B": "2", "A": `x"y`, "PWD": "/w"}, Cwd: "/w", ExecID: "e1",
			TimeoutNS: 5e9, Stdin: true, TTY: &WinSize{Rows: 24, Cols: 80}, KeepAlive: true},
		{Proto: 1, Op: opExec, Argv: []string{"true"}, KeepAlive: true},
	}
	for _, r := range reqs {
		got := r.appendJSON(nil)
		var back wireRequest
		require.NoError(t, json.Unmarshal(got, &back), "%s", got)
		assert.Equal(t, r, back, "%s", got)
	}
	plain := wireRequest{Proto: 1, Op: opExec, Argv: []string{"/bin/true"}, Env: map[string]string{"B": "2", "A": "1"}, ExecID: "e1", KeepAlive: true}
	want, err := json.Marshal(plain)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(plain.appendJSON(nil)), "map keys sorted, as encoding/json writes them")
}

func TestDecodeExitAndStarted(t *testing.T) {
	for _, x := range []wireExit{{ExitCode: 0}, {ExitCode: 1}, {ExitCode: 255}, {ExitCode: -1, StartErr: "no such file"}, {ExitCode: 137, TimedOut: true}, {ExitCode: 130, Killed: "client"}} {
		got, err := decodeExit(x.appendJSON(nil))
		require.NoError(t, err)
		assert.Equal(t, x, got)
	}
	for _, s := range []wireStarted{{PID: 12, ExecID: "exec-1"}, {PID: 99999, ExecID: `odd"id`}, {PID: 3}} {
		pid, err := decodeStartedPID(s.appendJSON(nil))
		require.NoError(t, err)
		assert.Equal(t, s.PID, pid)
	}
	for _, bad := range []string{`{"exit_code":01}`, `{"exit_code":}`, `{"exit_code":1`, `{"exit_code":1]`} {
		_, err := decodeExit([]byte(bad))
		assert.Error(t, err, bad)
	}
}

// FuzzDecodeFrames: whatever the hand decoders accept, encoding/json reads
// the same way.
func FuzzDecodeFrames(f *testing.F) {
	f.Add([]byte(`{"exit_code":0}`))
	f.Add([]byte(`{"exit_code":-1,"start_err":"x"}`))
	f.Add([]byte(`{"pid":12,"exec_id":"e-1"}`))
	f.Add([]byte(`{"exit_code":-0}`))
	f.Fuzz(func(t *testing.T, p []byte) {
		if x, err := decodeExit(p); err == nil {
			var want wireExit
			if assert.NoError(t, json.Unmarshal(p, &want), "%q", p) {
				assert.Equal(t, want, x, "%q", p)
			}
		}
		if pid, err := decodeStartedPID(p); err == nil {
			var want wireStarted
			if assert.NoError(t, json.Unmarshal(p, &want), "%q", p) {
				assert.Equal(t, want.PID, pid, "%q", p)
			}
		}
	})
}
