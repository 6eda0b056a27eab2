package service

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/gym-apptainer/gym-apptainer/internal/syncbuf"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// Output caps of a buffered exec, as gym-host exec --json's.
const (
	defaultMaxOutput = 1 << 20
	maxMaxOutput     = 1 << 30
)

// execRequest is POST /v1/sandboxes/ID/exec's body: NeMo Gym's exec
// arguments, plus the exec id, the output cap and the streaming switch.
type execRequest struct {
	Command string            `json:"command"`
	Cwd     string            `json:"cwd"`
	Env     map[string]string `json:"env"`
	// TimeoutS is NeMo Gym's timeout_s: null the config's default, 0 no
	// time at all (provider.TimeoutFromSeconds).
	TimeoutS  *float64 `json:"timeout_s"`
	User      string   `json:"user"`
	Stdin     *string  `json:"stdin"`
	StdinB64  *string  `json:"stdin_b64"`
	ExecID    string   `json:"exec_id"`
	MaxOutput *int     `json:"max_output"`
	Stream    bool     `json:"stream"`
}

// providerRequest checks the request and makes the provider's of it
// (without its output writers).
func (e execRequest) providerRequest() (provider.ExecRequest, error) {
	req := provider.ExecRequest{Command: e.Command, Env: e.Env, Cwd: e.Cwd, User: e.User,
		Timeout: provider.TimeoutFromSeconds(e.TimeoutS), ExecID: e.ExecID}
	if strings.TrimSpace(e.Command) == "" {
		return req, invalidf("command: required, a shell command line")
	}
	switch {
	case e.Stdin != nil && e.StdinB64 != nil:
		return req, invalidf("stdin and stdin_b64: give one or the other")
	case e.Stdin != nil:
		req.Stdin = strings.NewReader(*e.Stdin)
	case e.StdinB64 != nil:
		b, err := base64.StdEncoding.DecodeString(*e.StdinB64)
		if err != nil {
			return req, invalidf("stdin_b64: not standard base64: %v", err)
		}
		req.Stdin = strings.NewReader(string(b))
	}
	if req.ExecID == "" {
		// Chosen here, so that the caller learns it even from a failure.
		req.ExecID = uuid.NewString()
	}
	return req, nil
}

// maxOutput is the request's cap on each buffered stream.
func (e execRequest) maxOutput() (int, error) {
	if e.MaxOutput == nil {
		return defaultMaxOutput, nil
	}
	if n := *e.MaxOutput; n < 0 || n > maxMaxOutput {
		return 0, invalidf("max_output: want bytes from 0 to %d, got %d", maxMaxOutput, n)
	}
	return *e.MaxOutput, nil
}

// execResponse is a buffered exec's result (NeMo Gym's ExecResult fields).
type execResponse struct {
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	// ErrorType is null for the command's own exit, else sandbox or timeout.
	ErrorType   *string `json:"error_type"`
	Message     string  `json:"message"`
	ExecID      string  `json:"exec_id"`
	StdoutBytes int64   `json:"stdout_bytes"`
	StderrBytes int64   `json:"stderr_bytes"`
}

// exec answers POST /v1/sandboxes/ID/exec, buffered or streamed.
func (s *Service) exec(w http.ResponseWriter, r *http.Request) {
	var body execRequest
	if err := readJSON(r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := body.providerRequest()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if body.Stream {
		s.execStream(w, r, req)
		return
	}
	max, err := body.maxOutput()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	out, errOut := &syncbuf.Capped{Max: max}, &syncbuf.Capped{Max: max}
	req.Stdout, req.Stderr = out, errOut
	// The request's context ends when the caller goes away: the provider
	// then kills the command.
	res, err := s.p.Exec(r.Context(), id, req)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("exec in %s: %w", id, err))
		return
	}
	if res.ExecID == "" {
		res.ExecID = req.ExecID
	}
	writeJSON(w, http.StatusOK, execResponse{
		ExitCode: res.ExitCode, ErrorType: nullable(res.ErrorType), Message: res.Message, ExecID: res.ExecID,
		Stdout: text(out, "stdout"), Stderr: text(errOut, "stderr"),
		StdoutBytes: out.Total(), StderrBytes: errOut.Total(),
	})
}

// text is a captured stream as UTF-8 (invalid bytes replaced), with a
// line where it was cut.
func text(b *syncbuf.Capped, stream string) string {
	s := b.String(func(dropped int64) string {
		return fmt.Sprintf("\n[gym-host: %d bytes of %s dropped here; max_output %d keeps the first and last halves]\n", dropped, stream, b.Max)
	})
	return strings.ToValidUTF8(s, "\uFFFD")
}

// nullable is "" as null.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
