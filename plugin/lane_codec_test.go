package plugin

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/gym-apptainer/gym-apptainer/plugin/proto"
)

func laneRequests() []*pb.ExecRequest {
	return []*pb.ExecRequest{
		{},
		{Id: "gym-1", Command: "true", ExecId: "e-1"},
		{Id: "gym-1", Command: "printf '%s' \"$X\"; exit 3", Env: map[string]string{"X": "a b", "EMPTY": "", "UTF": "é✓"},
			Cwd: "/work", User: "1000", TimeoutMs: 1500, ExecId: "e-2", HasStdin: true},
		{Id: "gym-1", Command: "sh", TimeoutMs: -1, Tty: true, TtyRows: 24, TtyCols: 80, HasControl: true},
	}
}

func laneResults() []*pb.ExecServerMsg {
	return []*pb.ExecServerMsg{
		{Msg: &pb.ExecServerMsg_Stdout{Stdout: []byte("out\n")}},
		{Msg: &pb.ExecServerMsg_Stderr{Stderr: []byte{0, 1, 0xff}}},
		{Msg: &pb.ExecServerMsg_Stdout{Stdout: []byte{}}},
		{Msg: &pb.ExecServerMsg_Result{Result: &pb.ExecResult{}}},
		{Msg: &pb.ExecServerMsg_Result{Result: &pb.ExecResult{ExitCode: 3, ExecId: "e-1"}}},
		{Msg: &pb.ExecServerMsg_Result{Result: &pb.ExecResult{ExitCode: -1, ErrorType: "sandbox", Message: "gone ✓", ExecId: "e"}}},
	}
}

// Each side's bytes read the same through proto and through the lane's
// codec, both ways.
func TestLaneCodecMatchesProto(t *testing.T) {
	for _, r := range laneRequests() {
		m := &pb.ExecClientMsg{Msg: &pb.ExecClientMsg_Start{Start: r}}
		ours, err := marshalClientMsg(m)
		require.NoError(t, err)
		var viaProto pb.ExecClientMsg
		require.NoError(t, proto.Unmarshal(ours, &viaProto))
		assert.True(t, proto.Equal(m, &viaProto), "ours, read by proto: %v", &viaProto)

		theirs, err := proto.Marshal(m)
		require.NoError(t, err)
		back, err := unmarshalClientMsg(theirs)
		require.NoError(t, err)
		assert.True(t, proto.Equal(m, back), "proto's, read by ours: %v", back)
		_, ok := readClientStart(theirs)
		assert.True(t, ok, "a plain start message is read by hand, not by proto")
	}
	for _, m := range laneResults() {
		ours, err := marshalServerMsg(m)
		require.NoError(t, err)
		var viaProto pb.ExecServerMsg
		require.NoError(t, proto.Unmarshal(ours, &viaProto))
		assert.True(t, proto.Equal(m, &viaProto), "ours, read by proto: %v", &viaProto)

		theirs, err := proto.Marshal(m)
		require.NoError(t, err)
		var back pb.ExecServerMsg
		require.NoError(t, unmarshalServerMsg(theirs, &back))
		assert.True(t, proto.Equal(m, &back), "proto's, read by ours: %v", &back)
		assert.True(t, readServerMsg(theirs, &pb.ExecServerMsg{}), "read by hand, not by proto")
	}
	// What the hand reader leaves to proto: other messages, unknown fields.
	for _, m := range []*pb.ExecClientMsg{
		{Msg: &pb.ExecClientMsg_StdinEof{StdinEof: true}},
		{Msg: &pb.ExecClientMsg_Signal{Signal: "SIGINT"}},
	} {
		b, err := marshalClientMsg(m)
		require.NoError(t, err)
		back, err := unmarshalClientMsg(b)
		require.NoError(t, err)
		assert.True(t, proto.Equal(m, back))
	}
	withUnknown := append(mustMarshal(t, &pb.ExecRequest{Command: "true"}), 0xf8, 0x7f, 1) // field 2047, varint 1
	_, ok := readClientStart(append([]byte{0x0a, byte(len(withUnknown))}, withUnknown...))
	assert.False(t, ok, "an unknown field goes to proto")
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

// FuzzLaneCodec: whatever the hand readers accept, proto reads the same.
func FuzzLaneCodec(f *testing.F) {
	for _, r := range laneRequests() {
		b, _ := proto.Marshal(&pb.ExecClientMsg{Msg: &pb.ExecClientMsg_Start{Start: r}})
		f.Add(b)
	}
	for _, m := range laneResults() {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, ok := readClientStart(b); ok {
			var want pb.ExecClientMsg
			if assert.NoError(t, proto.Unmarshal(b, &want), "%x", b) {
				assert.True(t, proto.Equal(&want, &pb.ExecClientMsg{Msg: &pb.ExecClientMsg_Start{Start: r}}), "%x", b)
			}
		}
		var got pb.ExecServerMsg
		if readServerMsg(b, &got) {
			var want pb.ExecServerMsg
			if assert.NoError(t, proto.Unmarshal(b, &want), "%x", b) {
				assert.True(t, proto.Equal(&want, &got), "%x", b)
			}
		}
	})
}
