package executor

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

// FuzzReadFrames feeds arbitrary bytes to the frame reader and the payload
// decoders both sides use: a corrupt or hostile stream must end in an
// error, never a panic or an allocation past the frame limit; and every
// frame read back re-encodes to the bytes it came from.
func FuzzReadFrames(f *testing.F) {
	f.Add(jsonFrame(frameRequest, wireRequest{Proto: ProtocolVersion, Op: opExec, Argv: []string{"/bin/true"}}))
	f.Add(append(resizeFrame(WinSize{Rows: 24, Cols: 80}), u32Frame(frameCredit, 1<<18)...))
	f.Add(appendFrame(nil, frameStdout, []byte("out\x00\xff")))
	f.Add([]byte{'x', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var hdr [headerLen]byte
		var buf []byte
		consumed := 0
		for {
			typ, p, err := readFrame(r, &hdr, buf)
			if err != nil {
				if errors.Is(err, io.EOF) && consumed != len(data) {
					t.Fatalf("clean EOF after %d of %d bytes", consumed, len(data))
				}
				return
			}
			if len(p) > maxPayload {
				t.Fatalf("a payload of %d bytes passed the %d byte limit", len(p), maxPayload)
			}
			if got := appendFrame(nil, typ, p); !bytes.Equal(got, data[consumed:consumed+len(got)]) {
				t.Fatalf("frame does not re-encode to its bytes")
			}
			consumed += headerLen + len(p)
			switch typ {
			case frameResize:
				_, _ = decodeResize(p)
			case frameCredit, frameSignal:
				_, _ = decodeU32(p)
			case frameRequest:
				var w wireRequest
				_ = json.Unmarshal(p, &w)
			case frameHello:
				var w wireHello
				_ = json.Unmarshal(p, &w)
			case frameExit:
				var w wireExit
				_ = json.Unmarshal(p, &w)
			}
			buf = p[:0]
		}
	})
}
