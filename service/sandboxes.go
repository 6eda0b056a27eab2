package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// maxSeedBytes bounds create's seed files in all, as gym-host create
// --file's: they travel in memory, through the provider in one piece.
const maxSeedBytes = 16 << 20

// createRequest is POST /v1/sandboxes's body: NeMo Gym's SandboxSpec.
type createRequest struct {
	Image     string              `json:"image"`
	Env       map[string]string   `json:"env"`
	Workdir   string              `json:"workdir"`
	Files     map[string]string   `json:"files"`
	Resources resources.Resources `json:"resources"`
	Binds     []string            `json:"binds"`
	TTLS      *float64            `json:"ttl_s"`
	// Metadata values may be of any JSON type, as in NeMo Gym; they are
	// kept as text (strings as they are, the rest as JSON).
	Metadata map[string]any `json:"metadata"`
}

func (c createRequest) spec() (provider.Spec, error) {
	spec := provider.Spec{Image: c.Image, Env: c.Env, Workdir: c.Workdir, Resources: c.Resources, Binds: c.Binds}
	if c.TTLS != nil {
		ttl, err := durationOf("ttl_s", *c.TTLS)
		if err != nil {
			return spec, err
		}
		spec.TTL = ttl
	}
	if len(c.Files) > 0 {
		spec.Files = make(map[string][]byte, len(c.Files))
		total := 0
		for path, text := range c.Files {
			spec.Files[path] = []byte(text)
			total += len(text)
		}
		if total > maxSeedBytes {
			return spec, invalidf("files: seed files may hold %d bytes (16 MiB) in all, these hold %d; upload larger files after create (PUT .../files)", maxSeedBytes, total)
		}
	}
	if len(c.Metadata) > 0 {
		spec.Metadata = make(map[string]string, len(c.Metadata))
		for k, v := range c.Metadata {
			if s, ok := v.(string); ok {
				spec.Metadata[k] = s
				continue
			}
			b, err := json.Marshal(v)
			if err != nil {
				return spec, invalidf("metadata.%s: %v", k, err)
			}
			spec.Metadata[k] = string(b)
		}
	}
	return spec, nil
}

// create answers POST /v1/sandboxes.
func (s *Service) create(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := readJSON(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	spec, err := req.spec()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.p.Create(r.Context(), spec)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("create: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, toStatusJSON(st))
}

// skippedJSON is an unreadable handle file a listing left out.
type skippedJSON struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// splitSkipped separates the handle files List skipped from a real
// failure; err is nil when skipped handles were List's only complaint.
func splitSkipped(listErr error) ([]skippedJSON, error) {
	var sk *provider.SkippedError
	if !errors.As(listErr, &sk) {
		return []skippedJSON{}, listErr
	}
	out := make([]skippedJSON, 0, len(sk.Skipped))
	for _, h := range sk.Skipped {
		out = append(out, skippedJSON{Path: h.Path, Reason: h.Reason})
	}
	if error(sk) == listErr {
		return out, nil
	}
	return out, listErr
}

// list answers GET /v1/sandboxes.
func (s *Service) list(w http.ResponseWriter, r *http.Request) {
	sts, err := s.p.List(r.Context())
	skipped, err := splitSkipped(err)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list: %w", err))
		return
	}
	out := make([]statusJSON, 0, len(sts))
	for _, st := range sts {
		out = append(out, toStatusJSON(st))
	}
	writeJSON(w, http.StatusOK, map[string]any{"sandboxes": out, "skipped": skipped})
}

// statusOf is one sandbox's status; a sandbox never made here (or
// another owner's, which no handle here can name) is not found.
func (s *Service) statusOf(r *http.Request, id string) (provider.Status, error) {
	sts, err := s.p.Status(r.Context(), []string{id})
	if err != nil {
		return provider.Status{}, fmt.Errorf("status: %w", err)
	}
	if len(sts) == 0 {
		return provider.Status{}, fmt.Errorf("status: sandbox %s: %w", id, provider.ErrNotFound)
	}
	return sts[0], nil
}

// status answers GET /v1/sandboxes/ID.
func (s *Service) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.statusOf(r, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toStatusJSON(st))
}

// close answers DELETE /v1/sandboxes/ID; closing twice is success.
func (s *Service) close(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.p.Close(r.Context(), id); err != nil {
		s.writeError(w, r, fmt.Errorf("close %s: %w", id, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id})
}

// killExec answers POST /v1/sandboxes/ID/kill_exec.
func (s *Service) killExec(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ExecID string `json:"exec_id"`
	}
	if err := readJSON(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.ExecID == "" {
		s.writeError(w, r, invalidf("exec_id: required (the exec_id an exec returned, or the one it was given)"))
		return
	}
	id := r.PathValue("id")
	if err := s.p.KillExec(r.Context(), id, req.ExecID); err != nil {
		s.writeError(w, r, fmt.Errorf("kill exec %s in %s: %w", req.ExecID, id, err))
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// endpoint answers GET /v1/sandboxes/ID/endpoint?port=N: where a client
// reaches a server that listens on port N inside the sandbox. Sandboxes
// share their node's network, so that is the node: this host for local
// placement, the node SLURM placed it on otherwise.
func (s *Service) endpoint(w http.ResponseWriter, r *http.Request) {
	port, err := strconv.Atoi(r.URL.Query().Get("port"))
	if err != nil || port < 1 || port > 65535 {
		s.writeError(w, r, invalidf("port: want a TCP port from 1 to 65535, got %q", r.URL.Query().Get("port")))
		return
	}
	id := r.PathValue("id")
	st, err := s.statusOf(r, id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	host, err := endpointHost(st)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"endpoint": "http://" + host + ":" + strconv.Itoa(port),
		"headers":  map[string]string{},
	})
}

// endpointHost is the host part of a sandbox's endpoints.
func endpointHost(st provider.Status) (string, error) {
	switch {
	case st.State.Over():
		return "", &apiError{typ: provider.ErrorTypeSandbox, msg: fmt.Sprintf("endpoint: sandbox %s is %s (%s): nothing listens in it", st.ID, st.State, st.Reason)}
	case st.Placement == "" || st.Placement == "local":
		return "127.0.0.1", nil
	case st.Node == "":
		return "", &apiError{typ: provider.ErrorTypeUnavailable, msg: fmt.Sprintf("endpoint: sandbox %s has no node yet (%s %s): retry once it runs", st.ID, st.State, st.Reason)}
	}
	return st.Node, nil
}
