package executor

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// ProtocolVersion is the wire protocol's version. History:
//
//	1: first version. Added since, compatibly (a side that does not know a
//	   field ignores it): keep_alive in the request and the hello.
const ProtocolVersion = 1

// Frame types, client to server.
const (
	frameRequest  byte = 'q' // JSON wireRequest; always the first frame
	frameStdin    byte = 'i' // stdin bytes, within the granted credit
	frameStdinEOF byte = 'I' // no more stdin
	frameResize   byte = 'r' // 4 bytes: rows, cols (uint16 each)
	frameSignal   byte = 'g' // 4 bytes: signal number, to the exec's process group
	frameKill     byte = 'K' // kill every process of the exec, then report the exit
)

// Frame types, server to client.
const (
	frameHello   byte = 'h' // JSON wireHello; always the first frame
	frameStarted byte = 's' // JSON wireStarted; with the first output, credit or the exit
	frameStdout  byte = 'o'
	frameStderr  byte = 'e'
	frameCredit  byte = 'c' // 4 bytes: stdin bytes consumed, the client may send that many more
	frameExit    byte = 'x' // JSON wireExit; the exec's last frame
	frameError   byte = 'E' // text: the request was refused (peer, protocol); the last frame
)

const (
	headerLen = 5
	// maxPayload bounds a frame so a corrupt length cannot make a reader
	// allocate gigabytes. A request may carry a large environment.
	maxPayload = 16 << 20
	// chunkSize is how much output one read (and one frame) carries.
	chunkSize = 32 << 10
	// stdinWindow is how many stdin bytes a client may send ahead of the
	// command's reading; the server buffers at most this much per exec.
	stdinWindow = 256 << 10
)

type wireRequest struct {
	Proto     int               `json:"proto"`
	Op        string            `json:"op"` // "exec" or "ping"
	Argv      []string          `json:"argv,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Cwd       string            `json:"cwd,omitempty"`
	ExecID    string            `json:"exec_id,omitempty"`
	TimeoutNS int64             `json:"timeout_ns,omitempty"`
	Stdin     bool              `json:"stdin,omitempty"` // false: the command gets /dev/null
	TTY       *WinSize          `json:"tty,omitempty"`
	// KeepAlive asks the server to read the next request on the same
	// connection after this exec's exit (keepalive.go).
	KeepAlive bool `json:"keep_alive,omitempty"`
}

type wireHello struct {
	Proto   int    `json:"proto"`
	Version string `json:"version"`
	PID     int    `json:"pid"`
	Window  int    `json:"window"` // initial stdin credit
	// KeepAlive: the server will read another request after the exit.
	KeepAlive bool `json:"keep_alive,omitempty"`
}

type wireStarted struct {
	PID    int    `json:"pid"`
	ExecID string `json:"exec_id"`
}

type wireExit struct {
	ExitCode int  `json:"exit_code"`
	TimedOut bool `json:"timed_out,omitempty"`
	// Killed says who killed the exec other than its timeout: "client" (a
	// kill frame), "gone" (the connection broke), "shutdown" (the executor
	// is stopping).
	Killed   string `json:"killed,omitempty"`
	StartErr string `json:"start_err,omitempty"`
}

const (
	opExec = "exec"
	opPing = "ping"
)

func (r wireRequest) timeout() time.Duration { return time.Duration(r.TimeoutNS) }

// appendFrame appends one frame to b.
func appendFrame(b []byte, typ byte, payload []byte) []byte {
	b = append(b, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(len(payload)))
	return append(b, payload...)
}

// jsonFrame is a frame of one of the wire types, encoded by hand
// (wirejson.go).
func jsonFrame(typ byte, v jsonAppender) []byte {
	b := append(make([]byte, 0, 128), typ, 0, 0, 0, 0)
	b = v.appendJSON(b)
	binary.BigEndian.PutUint32(b[1:headerLen], uint32(len(b)-headerLen))
	return b
}

func u32Frame(typ byte, n uint32) []byte {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], n)
	return appendFrame(nil, typ, p[:])
}

func resizeFrame(ws WinSize) []byte {
	var p [4]byte
	binary.BigEndian.PutUint16(p[0:], ws.Rows)
	binary.BigEndian.PutUint16(p[2:], ws.Cols)
	return appendFrame(nil, frameResize, p[:])
}

// readFrame reads one frame. buf is reused when large enough; the returned
// payload aliases it.
func readFrame(r io.Reader, hdr *[headerLen]byte, buf []byte) (byte, []byte, error) {
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	size := binary.BigEndian.Uint32(hdr[1:])
	if size > maxPayload {
		return 0, nil, fmt.Errorf("executor protocol: a %q frame of %d bytes exceeds the %d byte limit: the stream is corrupt", hdr[0], size, maxPayload)
	}
	if cap(buf) < int(size) {
		buf = make([]byte, size)
	}
	p := buf[:size]
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return hdr[0], p, nil
}

func decodeU32(p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("executor protocol: a 4-byte frame of %d bytes", len(p))
	}
	return binary.BigEndian.Uint32(p), nil
}

func decodeResize(p []byte) (WinSize, error) {
	if len(p) != 4 {
		return WinSize{}, fmt.Errorf("executor protocol: a resize frame of %d bytes", len(p))
	}
	return WinSize{Rows: binary.BigEndian.Uint16(p[0:]), Cols: binary.BigEndian.Uint16(p[2:])}, nil
}
