package service

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// A PTY session is one interactive exec held open on one connection: the
// request is ordinary HTTP with a JSON body, the answer is 101 Switching
// Protocols, and from then on both sides write newline-delimited JSON
// frames on the raw connection (ptyframes.go). One JSON object per line,
// rather than WebSocket framing, keeps it reachable with nothing but a
// socket, a line reader and a JSON parser, as the rest of the API is.

// PTYProtocol is the Upgrade token of a PTY session.
const PTYProtocol = "gym-pty/1"

// Headers of the 101 answer: the exec's id (for kill_exec from elsewhere)
// and the session's mode ("pty" or "pipe").
const (
	ExecIDHeader  = "Gym-Exec-Id"
	PTYModeHeader = "Gym-Pty-Mode"
)

// defaultPTYSize is a session's terminal when the request names none
// (NeMo Gym's SandboxPtySpec defaults).
var defaultPTYSize = provider.WinSize{Rows: 24, Cols: 80}

// ptyRequest is POST /v1/sandboxes/ID/pty's body: NeMo Gym's
// SandboxPtySpec, plus a timeout and the exec id.
type ptyRequest struct {
	// Command is run with sh -c; null is the image's login shell.
	Command *string           `json:"command"`
	Cwd     string            `json:"cwd"`
	Env     map[string]string `json:"env"`
	User    string            `json:"user"`
	Rows    *int              `json:"rows"`
	Cols    *int              `json:"cols"`
	// PTY false is pipe mode: no terminal, stdout and stderr apart.
	PTY *bool `json:"pty"`
	// TimeoutS is null for no limit (a session lasts as long as its
	// program), else NeMo Gym's timeout_s (provider.TimeoutFromSeconds).
	TimeoutS *float64 `json:"timeout_s"`
	ExecID   string   `json:"exec_id"`
}

// providerRequest checks the request and makes the provider's of it
// (without its streams and controls).
func (p ptyRequest) providerRequest() (provider.ExecRequest, error) {
	req := provider.ExecRequest{Command: provider.LoginShell, Env: p.Env, Cwd: p.Cwd, User: p.User,
		Timeout: -1, ExecID: p.ExecID}
	if p.Command != nil {
		if strings.TrimSpace(*p.Command) == "" {
			return req, invalidf("command: a shell command line, or null for the login shell")
		}
		req.Command = *p.Command
	}
	if p.TimeoutS != nil {
		req.Timeout = provider.TimeoutFromSeconds(p.TimeoutS)
	}
	if p.PTY == nil || *p.PTY {
		size := defaultPTYSize
		for _, f := range []struct {
			name string
			v    *int
			dst  *uint16
		}{{"rows", p.Rows, &size.Rows}, {"cols", p.Cols, &size.Cols}} {
			if f.v == nil {
				continue
			}
			if *f.v < 1 || *f.v > 0xffff {
				return req, invalidf("%s: want 1 to 65535 characters, got %d", f.name, *f.v)
			}
			*f.dst = uint16(*f.v)
		}
		req.TTY = &size
	}
	if req.ExecID == "" {
		req.ExecID = uuid.NewString()
	}
	return req, nil
}

// upgradeRequested reports whether r asks for a PTY session's upgrade.
func upgradeRequested(r *http.Request) bool {
	hasToken := func(header, token string) bool {
		for _, v := range r.Header.Values(header) {
			for _, t := range strings.Split(v, ",") {
				if strings.EqualFold(strings.TrimSpace(t), token) {
					return true
				}
			}
		}
		return false
	}
	return hasToken("Connection", "upgrade") && hasToken("Upgrade", PTYProtocol)
}

// pty answers POST /v1/sandboxes/ID/pty: a refused request is an ordinary
// error response; an accepted one becomes a session on the connection,
// which lasts until the exec ends or the client goes away (which kills it).
// The handler runs for the whole session, so that the daemon counts it as
// activity and does not idle out under an open terminal.
func (s *Service) pty(w http.ResponseWriter, r *http.Request) {
	if !upgradeRequested(r) {
		s.writeError(w, r, invalidf("a PTY session upgrades its connection: send the headers Connection: Upgrade and Upgrade: %s (docs/api.md)", PTYProtocol))
		return
	}
	var body ptyRequest
	if err := readJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := body.providerRequest()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.sessions.isClosed() {
		s.writeError(w, r, fmt.Errorf("the service is closing its PTY sessions; start it again (gym-host serve): %w", provider.ErrUnavailable))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.writeError(w, r, fmt.Errorf("taking over the connection for a PTY session: %w", err))
		return
	}
	defer conn.Close()
	if !s.sessions.add(conn) {
		return // closed since the check above: nobody will serve this session
	}
	defer s.sessions.remove(conn)
	// The server's header deadline may still be set; a session has none.
	_ = conn.SetDeadline(time.Time{})
	mode := "pty"
	if req.TTY == nil {
		mode = "pipe"
	}
	head := "HTTP/1.1 101 Switching Protocols\r\n" +
		"Upgrade: " + PTYProtocol + "\r\nConnection: Upgrade\r\n" +
		VersionHeader + ": " + strconv.Itoa(APIVersion) + "\r\n" +
		ExecIDHeader + ": " + req.ExecID + "\r\n" +
		PTYModeHeader + ": " + mode + "\r\n\r\n"
	if _, err := brw.Writer.WriteString(head); err != nil {
		return
	}
	if err := brw.Writer.Flush(); err != nil {
		return
	}
	s.runPTY(r.Context(), conn, brw.Reader, brw.Writer, r.PathValue("id"), req)
}

// runPTY runs req in sandbox id with its stdin, resizes and signals read
// from the client's frames and its output and end written as frames.
func (s *Service) runPTY(ctx context.Context, conn net.Conn, in *bufio.Reader, out *bufio.Writer, id string, req provider.ExecRequest) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fw := &frameWriter{w: out, cancel: cancel}
	stdin := newStdinPump(ctx)
	defer stdin.stop()
	control := make(chan provider.Control, controlQueue)
	req.Stdin = stdin.reader()
	req.Control = control
	req.Stdout = ptyChunks{fw, "stdout"}
	req.Stderr = ptyChunks{fw, "stderr"}
	if req.TTY != nil {
		// A terminal merges its streams; the provider writes both to Stdout,
		// this is only in case one does not.
		req.Stderr = req.Stdout
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.readFrames(ctx, in, fw, stdin, control, req.TTY != nil)
	}()

	res, err := s.p.Exec(ctx, id, req)
	if err != nil {
		fw.end(errorEvent{"error", errorBody(fmt.Errorf("pty session in %s: %w", id, err))})
	} else {
		if res.ExecID == "" {
			res.ExecID = req.ExecID
		}
		fw.end(exitEvent{Type: "exit", ExitCode: res.ExitCode, ErrorType: nullable(res.ErrorType), Message: res.Message, ExecID: res.ExecID})
	}
	// Closing the connection ends the frame reader.
	_ = conn.Close()
	cancel()
	<-readerDone
}
