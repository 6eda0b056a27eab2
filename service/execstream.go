package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// A streamed exec answers with newline-delimited JSON events, each
// flushed as it is produced: stdout and stderr chunks (base64, since
// output is bytes), then exactly one exit or error event.

// chunkEvent is output: Type is "stdout" or "stderr".
type chunkEvent struct {
	Type string `json:"type"`
	Data string `json:"data"` // base64
}

// errorEvent ends an exec that failed after its output began.
type errorEvent struct {
	Type string `json:"type"` // "error"
	errorJSON
}

// exitEvent is the last line of an exec that ran; its error_type is
// always there, null for the command's own exit.
type exitEvent struct {
	Type      string  `json:"type"`
	ExitCode  int     `json:"exit_code"`
	ErrorType *string `json:"error_type"`
	Message   string  `json:"message"`
	ExecID    string  `json:"exec_id"`
}

// events writes a streamed exec's response. The status line goes out with
// the first event, so that a call that fails before any output (no such
// sandbox) is an ordinary error response.
type events struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	cancel context.CancelFunc // ends the exec when the caller cannot be written to

	mu      sync.Mutex
	started bool
	failed  bool
}

func (e *events) send(v any) {
	b, err := marshal(v)
	if err != nil {
		b, _ = marshal(errorEvent{"error", errorJSON{provider.ErrorTypeInternal, "encoding an event: " + err.Error()}})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failed {
		return
	}
	if !e.started {
		e.started = true
		e.w.Header().Set("Content-Type", "application/x-ndjson")
		e.w.WriteHeader(http.StatusOK)
	}
	if _, err := e.w.Write(b); err == nil {
		err = e.rc.Flush()
	}
	if err != nil {
		// The caller is gone: nobody will read the rest.
		e.failed = true
		e.cancel()
	}
}

func (e *events) begun() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.started
}

// chunks is an exec's stdout or stderr as events. Every write succeeds:
// a caller that cannot be written to ends the exec instead.
type chunks struct {
	ev     *events
	stream string
}

func (c chunks) Write(p []byte) (int, error) {
	if len(p) > 0 {
		c.ev.send(chunkEvent{Type: c.stream, Data: base64.StdEncoding.EncodeToString(p)})
	}
	return len(p), nil
}

// execStream runs req, streaming its output as events.
func (s *Service) execStream(w http.ResponseWriter, r *http.Request, req provider.ExecRequest) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ev := &events{w: w, rc: http.NewResponseController(w), cancel: cancel}
	req.Stdout, req.Stderr = chunks{ev, "stdout"}, chunks{ev, "stderr"}
	id := r.PathValue("id")
	res, err := s.p.Exec(ctx, id, req)
	if err != nil {
		err = fmt.Errorf("exec in %s: %w", id, err)
		if !ev.begun() {
			s.writeError(w, r, err)
			return
		}
		ev.send(errorEvent{"error", errorBody(err)})
		return
	}
	if res.ExecID == "" {
		res.ExecID = req.ExecID
	}
	ev.send(exitEvent{Type: "exit", ExitCode: res.ExitCode, ErrorType: nullable(res.ErrorType), Message: res.Message, ExecID: res.ExecID})
}
