package plugin

import (
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/gym-apptainer/gym-apptainer/plugin/proto"
)

// A lane call is one ExecClientMsg carrying the request, and, back, the
// command's output chunks and its result. proto.Marshal and Unmarshal walk
// the messages' descriptors through a large generic codec, whose code is
// cold between commands: timing marks in the plugin put the request's
// Unmarshal alone at ~55 µs per command on the SLURM exec bench. These
// functions write and read those few messages with protowire directly, in
// the standard wire format, so either side may also be proto's own.
// Anything they do not expect (another field, a repeated message, invalid
// UTF-8) goes through proto, which then decides. lane_codec_test.go holds
// them to proto, with a fuzz target for the decoders.

// Field numbers (sandbox.proto).
const (
	fClientStart = 1

	fReqID         = 1
	fReqCommand    = 2
	fReqEnv        = 3
	fReqCwd        = 4
	fReqUser       = 5
	fReqTimeoutMs  = 6
	fReqExecID     = 7
	fReqHasStdin   = 8
	fReqTTY        = 110
	fReqTTYRows    = 111
	fReqTTYCols    = 112
	fReqHasControl = 113

	fServerStdout = 1
	fServerStderr = 2
	fServerResult = 3

	fResExitCode  = 1
	fResErrorType = 2
	fResMessage   = 3
	fResExecID    = 4
)

// marshalClientMsg encodes a lane call's message.
func marshalClientMsg(m *pb.ExecClientMsg) ([]byte, error) {
	r := m.GetStart()
	if r == nil {
		return proto.Marshal(m)
	}
	body := appendExecRequest(nil, r)
	b := protowire.AppendTag(make([]byte, 0, len(body)+4), fClientStart, protowire.BytesType)
	return protowire.AppendBytes(b, body), nil
}

func appendExecRequest(b []byte, r *pb.ExecRequest) []byte {
	b = appendStringField(b, fReqID, r.GetId())
	b = appendStringField(b, fReqCommand, r.GetCommand())
	for k, v := range r.GetEnv() {
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.BytesType)
		e = protowire.AppendString(e, k)
		e = protowire.AppendTag(e, 2, protowire.BytesType)
		e = protowire.AppendString(e, v)
		b = protowire.AppendTag(b, fReqEnv, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	b = appendStringField(b, fReqCwd, r.GetCwd())
	b = appendStringField(b, fReqUser, r.GetUser())
	b = appendVarintField(b, fReqTimeoutMs, uint64(r.GetTimeoutMs()))
	b = appendStringField(b, fReqExecID, r.GetExecId())
	b = appendBoolField(b, fReqHasStdin, r.GetHasStdin())
	b = appendBoolField(b, fReqTTY, r.GetTty())
	b = appendVarintField(b, fReqTTYRows, uint64(r.GetTtyRows()))
	b = appendVarintField(b, fReqTTYCols, uint64(r.GetTtyCols()))
	return appendBoolField(b, fReqHasControl, r.GetHasControl())
}

// marshalServerMsg encodes an output chunk or the result.
func marshalServerMsg(m *pb.ExecServerMsg) ([]byte, error) {
	switch x := m.GetMsg().(type) {
	case *pb.ExecServerMsg_Stdout:
		return appendBytesAlways(nil, fServerStdout, x.Stdout), nil
	case *pb.ExecServerMsg_Stderr:
		return appendBytesAlways(nil, fServerStderr, x.Stderr), nil
	case *pb.ExecServerMsg_Result:
		if x.Result == nil {
			break
		}
		r := x.Result
		var body []byte
		// int32: a negative one is sign-extended to 64 bits, as proto does.
		body = appendVarintField(body, fResExitCode, uint64(int64(r.GetExitCode())))
		body = appendStringField(body, fResErrorType, r.GetErrorType())
		body = appendStringField(body, fResMessage, r.GetMessage())
		body = appendStringField(body, fResExecID, r.GetExecId())
		return appendBytesAlways(nil, fServerResult, body), nil
	}
	return proto.Marshal(m)
}

// A oneof member is written even when empty: its presence is the message.
func appendBytesAlways(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendStringField(b []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBoolField(b []byte, num protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return appendVarintField(b, num, 1)
}

// unmarshalClientMsg decodes a lane call's message.
func unmarshalClientMsg(b []byte) (*pb.ExecClientMsg, error) {
	if r, ok := readClientStart(b); ok {
		return &pb.ExecClientMsg{Msg: &pb.ExecClientMsg_Start{Start: r}}, nil
	}
	m := &pb.ExecClientMsg{}
	return m, proto.Unmarshal(b, m)
}

// readClientStart reads a message that is exactly one start field.
func readClientStart(b []byte) (*pb.ExecRequest, bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != fClientStart || typ != protowire.BytesType {
		return nil, false
	}
	body, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		return nil, false
	}
	r := &pb.ExecRequest{}
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return nil, false
		}
		body = body[n:]
		switch {
		case typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(body)
			if n < 0 {
				return nil, false
			}
			body = body[n:]
			if !setRequestBytes(r, num, v) {
				return nil, false
			}
		case typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(body)
			if n < 0 {
				return nil, false
			}
			body = body[n:]
			if !setRequestVarint(r, num, v) {
				return nil, false
			}
		default:
			return nil, false
		}
	}
	return r, true
}

func setRequestBytes(r *pb.ExecRequest, num protowire.Number, v []byte) bool {
	if num == fReqEnv {
		k, val, ok := readEnvEntry(v)
		if !ok {
			return false
		}
		if r.Env == nil {
			r.Env = map[string]string{}
		}
		r.Env[k] = val
		return true
	}
	if !utf8.Valid(v) {
		return false
	}
	s := string(v)
	switch num {
	case fReqID:
		r.Id = s
	case fReqCommand:
		r.Command = s
	case fReqCwd:
		r.Cwd = s
	case fReqUser:
		r.User = s
	case fReqExecID:
		r.ExecId = s
	default:
		return false
	}
	return true
}

func setRequestVarint(r *pb.ExecRequest, num protowire.Number, v uint64) bool {
	switch num {
	case fReqTimeoutMs:
		r.TimeoutMs = int64(v)
	case fReqHasStdin:
		r.HasStdin = protowire.DecodeBool(v)
	case fReqTTY:
		r.Tty = protowire.DecodeBool(v)
	case fReqTTYRows:
		r.TtyRows = uint32(v)
	case fReqTTYCols:
		r.TtyCols = uint32(v)
	case fReqHasControl:
		r.HasControl = protowire.DecodeBool(v)
	default:
		return false
	}
	return true
}

// readEnvEntry reads one map entry: key 1, value 2, both strings.
func readEnvEntry(b []byte) (k, v string, ok bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType || (num != 1 && num != 2) {
			return "", "", false
		}
		s, m := protowire.ConsumeBytes(b[n:])
		if m < 0 || !utf8.Valid(s) {
			return "", "", false
		}
		b = b[n+m:]
		if num == 1 {
			k = string(s)
		} else {
			v = string(s)
		}
	}
	return k, v, true
}

// unmarshalServerMsg decodes an output chunk or the result into m. An
// output chunk may alias b, which the caller must not reuse.
func unmarshalServerMsg(b []byte, m *pb.ExecServerMsg) error {
	if readServerMsg(b, m) {
		return nil
	}
	proto.Reset(m)
	return proto.Unmarshal(b, m)
}

func readServerMsg(b []byte, m *pb.ExecServerMsg) bool {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || typ != protowire.BytesType {
		return false
	}
	body, k := protowire.ConsumeBytes(b[n:])
	if k < 0 || n+k != len(b) {
		return false
	}
	// An output chunk aliases b: the lane reads each frame into a buffer
	// of its own, so copying it would only double the bytes moved.
	switch num {
	case fServerStdout:
		m.Msg = &pb.ExecServerMsg_Stdout{Stdout: body}
	case fServerStderr:
		m.Msg = &pb.ExecServerMsg_Stderr{Stderr: body}
	case fServerResult:
		r, ok := readResult(body)
		if !ok {
			return false
		}
		m.Msg = &pb.ExecServerMsg_Result{Result: r}
	default:
		return false
	}
	return true
}

func readResult(b []byte) (*pb.ExecResult, bool) {
	r := &pb.ExecResult{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		if num == fResExitCode && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, false
			}
			b = b[n:]
			r.ExitCode = int32(v)
			continue
		}
		if typ != protowire.BytesType {
			return nil, false
		}
		s, n := protowire.ConsumeBytes(b)
		if n < 0 || !utf8.Valid(s) {
			return nil, false
		}
		b = b[n:]
		switch num {
		case fResErrorType:
			r.ErrorType = string(s)
		case fResMessage:
			r.Message = string(s)
		case fResExecID:
			r.ExecId = string(s)
		default:
			return nil, false
		}
	}
	return r, true
}
