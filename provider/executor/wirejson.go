package executor

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
)

// Every command costs a request, a hello, a started and an exit frame, all
// small JSON objects. encoding/json's reflection takes tens of
// microseconds when its code is cold, which it is between commands: in the
// executor, whose one-CPU job also runs the command, and in the plugin.
// These encoders append the same JSON by hand (field names and omitempty
// as the struct tags say); a string that is not plain printable ASCII goes
// through encoding/json. The client decodes the common exit and started
// frames by hand too, and anything else through encoding/json. Tests and a
// fuzz target hold both to encoding/json.

type jsonAppender interface{ appendJSON(b []byte) []byte }

func (h wireHello) appendJSON(b []byte) []byte {
	b = append(b, `{"proto":`...)
	b = strconv.AppendInt(b, int64(h.Proto), 10)
	b = append(b, `,"version":`...)
	b = appendJSONString(b, h.Version)
	b = append(b, `,"pid":`...)
	b = strconv.AppendInt(b, int64(h.PID), 10)
	b = append(b, `,"window":`...)
	b = strconv.AppendInt(b, int64(h.Window), 10)
	if h.KeepAlive {
		b = append(b, `,"keep_alive":true`...)
	}
	return append(b, '}')
}

func (s wireStarted) appendJSON(b []byte) []byte {
	b = append(b, `{"pid":`...)
	b = strconv.AppendInt(b, int64(s.PID), 10)
	b = append(b, `,"exec_id":`...)
	b = appendJSONString(b, s.ExecID)
	return append(b, '}')
}

func (x wireExit) appendJSON(b []byte) []byte {
	b = append(b, `{"exit_code":`...)
	b = strconv.AppendInt(b, int64(x.ExitCode), 10)
	if x.TimedOut {
		b = append(b, `,"timed_out":true`...)
	}
	if x.Killed != "" {
		b = append(b, `,"killed":`...)
		b = appendJSONString(b, x.Killed)
	}
	if x.StartErr != "" {
		b = append(b, `,"start_err":`...)
		b = appendJSONString(b, x.StartErr)
	}
	return append(b, '}')
}

func (r wireRequest) appendJSON(b []byte) []byte {
	b = append(b, `{"proto":`...)
	b = strconv.AppendInt(b, int64(r.Proto), 10)
	b = append(b, `,"op":`...)
	b = appendJSONString(b, r.Op)
	if len(r.Argv) > 0 {
		b = append(b, `,"argv":[`...)
		for i, a := range r.Argv {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, a)
		}
		b = append(b, ']')
	}
	if len(r.Env) > 0 {
		b = append(b, `,"env":{`...)
		// Sorted, as encoding/json writes a map: one request, one text.
		for i, k := range slices.Sorted(maps.Keys(r.Env)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, r.Env[k])
		}
		b = append(b, '}')
	}
	if r.Cwd != "" {
		b = append(b, `,"cwd":`...)
		b = appendJSONString(b, r.Cwd)
	}
	if r.ExecID != "" {
		b = append(b, `,"exec_id":`...)
		b = appendJSONString(b, r.ExecID)
	}
	if r.TimeoutNS != 0 {
		b = append(b, `,"timeout_ns":`...)
		b = strconv.AppendInt(b, r.TimeoutNS, 10)
	}
	if r.Stdin {
		b = append(b, `,"stdin":true`...)
	}
	if r.TTY != nil {
		b = append(b, `,"tty":{"rows":`...)
		b = strconv.AppendUint(b, uint64(r.TTY.Rows), 10)
		b = append(b, `,"cols":`...)
		b = strconv.AppendUint(b, uint64(r.TTY.Cols), 10)
		b = append(b, '}')
	}
	if r.KeepAlive {
		b = append(b, `,"keep_alive":true`...)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: as it is when it is plain
// printable ASCII without quote or backslash (and none of <, >, & that
// encoding/json escapes), else as encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// decodeExit reads an exit frame. The common one, {"exit_code":N}, is read
// by hand.
func decodeExit(p []byte) (wireExit, error) {
	if n, rest, ok := intAfter(p, `{"exit_code":`); ok && string(rest) == "}" {
		return wireExit{ExitCode: n}, nil
	}
	var x wireExit
	err := json.Unmarshal(p, &x)
	return x, err
}

// decodeStartedPID reads the pid of a started frame. The common one,
// {"pid":N,"exec_id":"PLAIN"}, is read by hand.
func decodeStartedPID(p []byte) (int, error) {
	if n, rest, ok := intAfter(p, `{"pid":`); ok && plainStringObjectEnd(rest, `,"exec_id":"`) {
		return n, nil
	}
	var st wireStarted
	err := json.Unmarshal(p, &st)
	return st.PID, err
}

// intAfter reads the JSON integer that follows prefix in p: an optional
// minus and 1-9 digits, without a leading zero (JSON has none).
func intAfter(p []byte, prefix string) (n int, rest []byte, ok bool) {
	if len(p) < len(prefix) || string(p[:len(prefix)]) != prefix {
		return 0, nil, false
	}
	p = p[len(prefix):]
	neg := len(p) > 0 && p[0] == '-'
	if neg {
		p = p[1:]
	}
	i := 0
	for i < len(p) && '0' <= p[i] && p[i] <= '9' {
		i++
	}
	if i == 0 || i > 9 || p[0] == '0' && i > 1 {
		return 0, nil, false
	}
	for _, c := range p[:i] {
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, p[i:], true
}

// plainStringObjectEnd: p is key, then printable ASCII without quote,
// backslash or control bytes, then `"}`.
func plainStringObjectEnd(p []byte, key string) bool {
	if len(p) < len(key)+2 || string(p[:len(key)]) != key || string(p[len(p)-2:]) != `"}` {
		return false
	}
	for _, c := range p[len(key) : len(p)-2] {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
