package service

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxJSONBody bounds a JSON request body, which is held in memory: exec's
// stdin and create's seed files travel in it. Larger data goes through the
// files endpoints, which stream.
const maxJSONBody = 64 << 20

// readJSON decodes the request body into v. An empty body is {}; unknown
// keys, trailing data and a body over maxJSONBody are invalid requests.
// The body is read to its end: only then does net/http watch the
// connection, so that a caller that goes away cancels the call.
func readJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBody+1))
	if err != nil {
		return invalidf("reading the request body: %v", err)
	}
	if len(data) > maxJSONBody {
		return invalidf("request body is over %d MiB: send large files with PUT .../files, which streams", maxJSONBody>>20)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidf("request body: %s", jsonProblem(err))
	}
	if dec.More() {
		return invalidf("request body: data after the JSON object")
	}
	return nil
}

// jsonProblem words a decoding error for the caller: which field, what
// was wrong.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return fmt.Sprintf("%s: want %s, got JSON %s", te.Field, te.Type, te.Value)
	case errors.As(err, &te):
		return fmt.Sprintf("want a JSON object, got JSON %s", te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("not JSON (%v at byte %d)", se, se.Offset)
	}
	return err.Error() // e.g. json: unknown field "x"
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := marshal(v)
	if err != nil {
		b, _ = marshal(errorJSON{ErrorType: "internal", Message: "encoding the response: " + err.Error()})
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// marshal is JSON plus a newline, with <, > and & as they are: the
// reader is a program, not a web page.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
