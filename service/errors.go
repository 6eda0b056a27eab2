package service

import (
	"fmt"
	"net/http"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// ErrorTypeForbidden is the error type of a connection from another user.
const ErrorTypeForbidden = "forbidden"

// httpStatus is the HTTP status of each error type (docs/api.md's table).
// 499 is nginx's "client closed request": the caller's own doing.
var httpStatus = map[string]int{
	provider.ErrorTypeInvalid:     http.StatusBadRequest,
	provider.ErrorTypeNotFound:    http.StatusNotFound,
	provider.ErrorTypeUnavailable: http.StatusServiceUnavailable,
	provider.ErrorTypeSandbox:     http.StatusBadGateway,
	provider.ErrorTypeTimeout:     http.StatusGatewayTimeout,
	provider.ErrorTypeInterrupted: 499,
	provider.ErrorTypeInternal:    http.StatusInternalServerError,
	ErrorTypeForbidden:            http.StatusForbidden,
}

// StatusOf is the HTTP status of an error type; an unknown type is an
// internal error.
func StatusOf(errorType string) int {
	if s, ok := httpStatus[errorType]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// apiError is a failure the service finds itself (a malformed request, a
// stranger at the socket), typed for provider.ErrorTypeOf.
type apiError struct {
	typ string
	msg string
}

func (e *apiError) Error() string     { return e.msg }
func (e *apiError) ErrorType() string { return e.typ }

// invalidf is a request the service refuses: fix it, do not retry it.
func invalidf(format string, args ...any) error {
	return &apiError{typ: provider.ErrorTypeInvalid, msg: fmt.Sprintf(format, args...)}
}

// errorJSON is the body of every error response, and the error event of
// a streamed exec.
type errorJSON struct {
	ErrorType string `json:"error_type"`
	Message   string `json:"message"`
}

func errorBody(err error) errorJSON {
	return errorJSON{ErrorType: provider.ErrorTypeOf(err), Message: err.Error()}
}

// writeError answers with err's type, its HTTP status and its message.
func (s *Service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	body := errorBody(err)
	status := StatusOf(body.ErrorType)
	if status == http.StatusInternalServerError {
		s.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	}
	writeJSON(w, status, body)
}
