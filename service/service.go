package service

import (
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// Options are what the service serves and reports.
type Options struct {
	// Provider does the work; the service only translates.
	Provider provider.Provider
	// Version is gym-apptainer's, reported by GET /v1/info.
	Version string
	// PID is reported by GET /v1/info; 0 means this process's.
	PID int
	// UID is the only user admitted at the socket; 0 means this process's
	// user (a root service admits root only).
	UID int
	// Admit, when set, is asked before each request: it returns what to
	// call when the request ends, or an error (the request is answered
	// 503 unavailable). The daemon counts requests as activity with it.
	Admit func() (done func(), err error)
	// TempDir holds uploads and downloads on their way (each in a 0700
	// directory of its own); "" means os.TempDir().
	TempDir string
	// Now is gc's clock; nil means time.Now.
	Now func() time.Time
	// Logger gets what the caller is not told (internal errors); nil
	// discards it.
	Logger hclog.Logger
}

// Service is the API's http.Handler.
type Service struct {
	opts   Options
	p      provider.Provider
	logger hclog.Logger
	mux    *http.ServeMux
	// sessions are the PTY sessions' connections, which the HTTP server
	// gave up when they were upgraded.
	sessions sessionSet
}

// New returns the service over opts.Provider.
func New(opts Options) *Service {
	if opts.PID == 0 {
		opts.PID = os.Getpid()
	}
	if opts.UID == 0 {
		opts.UID = os.Getuid()
	}
	if opts.TempDir == "" {
		opts.TempDir = os.TempDir()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	s := &Service{opts: opts, p: opts.Provider, logger: opts.Logger, mux: http.NewServeMux()}
	s.routes()
	return s
}

func (s *Service) routes() {
	m := s.mux
	m.HandleFunc("GET /v1/info", s.info)
	m.HandleFunc("POST /v1/sandboxes", s.create)
	m.HandleFunc("GET /v1/sandboxes", s.list)
	m.HandleFunc("GET /v1/sandboxes/{id}", s.status)
	m.HandleFunc("DELETE /v1/sandboxes/{id}", s.close)
	m.HandleFunc("POST /v1/sandboxes/{id}/exec", s.exec)
	m.HandleFunc("POST /v1/sandboxes/{id}/kill_exec", s.killExec)
	m.HandleFunc("POST /v1/sandboxes/{id}/pty", s.pty)
	m.HandleFunc("PUT /v1/sandboxes/{id}/files", s.upload)
	m.HandleFunc("GET /v1/sandboxes/{id}/files", s.download)
	m.HandleFunc("GET /v1/sandboxes/{id}/endpoint", s.endpoint)
	m.HandleFunc("POST /v1/gc", s.gc)
	m.HandleFunc("POST /v1/close_all", s.closeAll)
	// Everything else, wrong methods included: a JSON error, not the
	// mux's text.
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorJSON{ErrorType: provider.ErrorTypeNotFound,
			Message: "no such endpoint: " + r.Method + " " + r.URL.Path + " (API version " + strconv.Itoa(APIVersion) + ": see docs/api.md)"})
	})
}

// ServeHTTP stamps the API version, admits only the owning user, counts
// the request as activity, and routes it.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(VersionHeader, strconv.Itoa(APIVersion))
	if err := s.checkPeer(r); err != nil {
		// The connection is closed after this answer: a stranger gets
		// nothing else on it.
		w.Header().Set("Connection", "close")
		s.writeError(w, r, err)
		return
	}
	if s.opts.Admit != nil {
		done, err := s.opts.Admit()
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		defer done()
	}
	s.mux.ServeHTTP(w, r)
}

// info answers GET /v1/info.
func (s *Service) info(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"api_version": APIVersion, "version": s.opts.Version, "pid": s.opts.PID})
}

// CloseSessions ends every PTY session (their programs are killed) and
// refuses new ones. An http.Server does not know the connections it handed
// over to sessions: call this when closing it (HTTPServer's server does on
// Shutdown by itself).
func (s *Service) CloseSessions() { s.sessions.closeAll() }
