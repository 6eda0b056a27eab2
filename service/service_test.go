package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

func decode(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &m), "body %q", body)
	return m
}

func TestInfoAndVersionHeader(t *testing.T) {
	s := serve(t, &fake{})
	resp, body := s.do(t, "GET", "/v1/info", "")
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Equal(t, "1", resp.Header.Get(VersionHeader))
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, map[string]any{"api_version": 1.0, "version": "test-1.2.3", "pid": 4242.0}, decode(t, body))

	// Errors carry the header too, and every unknown path or method is a
	// JSON error.
	for _, c := range [][2]string{{"GET", "/v2/info"}, {"PATCH", "/v1/sandboxes/x"}, {"GET", "/"}} {
		resp, body := s.do(t, c[0], c[1], "")
		assert.Equal(t, 404, resp.StatusCode, "%v", c)
		assert.Equal(t, "1", resp.Header.Get(VersionHeader))
		assert.Equal(t, "not_found", decode(t, body)["error_type"], "%v", c)
	}
}

func TestAnotherUserIsForbiddenAndCutOff(t *testing.T) {
	called := false
	s := serve(t, &fake{list: func(context.Context) ([]provider.Status, error) {
		called = true
		return nil, nil
	}}, func(o *Options) { o.UID = os.Getuid() + 1 })
	resp, body := s.do(t, "GET", "/v1/sandboxes", "")
	assert.Equal(t, 403, resp.StatusCode)
	assert.True(t, resp.Close, "the connection is closed after the refusal")
	m := decode(t, body)
	assert.Equal(t, "forbidden", m["error_type"])
	assert.Contains(t, m["message"], fmt.Sprintf("uid %d may not use", os.Getuid()))
	assert.False(t, called, "a stranger's request reached the provider")
}

func TestPeerIsAdmitted(t *testing.T) {
	s := serve(t, &fake{list: func(context.Context) ([]provider.Status, error) { return nil, nil }})
	resp, body := s.do(t, "GET", "/v1/sandboxes", "")
	assert.Equal(t, 200, resp.StatusCode, body)
	assert.False(t, resp.Close)
}

func TestSocketIsOwnerOnly(t *testing.T) {
	s := serve(t, &fake{})
	fi, err := os.Stat(s.sock)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestAdmitCountsEveryRequest(t *testing.T) {
	var running, admitted int
	refuse := false
	s := serve(t, &fake{list: func(context.Context) ([]provider.Status, error) {
		assert.Equal(t, 1, running, "the request runs while admitted")
		return nil, nil
	}}, func(o *Options) {
		o.Admit = func() (func(), error) {
			if refuse {
				return nil, fmt.Errorf("the daemon is shutting down: %w", provider.ErrUnavailable)
			}
			admitted++
			running++
			return func() { running-- }, nil
		}
	})
	resp, _ := s.do(t, "GET", "/v1/sandboxes", "")
	assert.Equal(t, 200, resp.StatusCode)
	resp, _ = s.do(t, "GET", "/v1/info", "")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, 2, admitted)
	assert.Equal(t, 0, running, "every admitted request ended")

	refuse = true
	resp, body := s.do(t, "GET", "/v1/info", "")
	assert.Equal(t, 503, resp.StatusCode)
	assert.Equal(t, "unavailable", decode(t, body)["error_type"])
}

func TestErrorTypesAndStatuses(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		typ    string
	}{
		{fmt.Errorf("x: %w", provider.ErrInvalid), 400, "invalid"},
		{fmt.Errorf("x: %w", provider.ErrNotFound), 404, "not_found"},
		{fmt.Errorf("x: %w", provider.ErrUnavailable), 503, "unavailable"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), 504, "timeout"},
		{fmt.Errorf("x: %w", context.Canceled), 499, "interrupted"},
		{errors.New("disk full"), 500, "internal"},
	} {
		s := serve(t, &fake{close: func(context.Context, string) error { return c.err }})
		resp, body := s.do(t, "DELETE", "/v1/sandboxes/gym-1", "")
		assert.Equal(t, c.status, resp.StatusCode, "%v", c.err)
		m := decode(t, body)
		assert.Equal(t, c.typ, m["error_type"])
		assert.Equal(t, "close gym-1: "+c.err.Error(), m["message"])
	}
	assert.Equal(t, 502, StatusOf("sandbox"))
	assert.Equal(t, 403, StatusOf("forbidden"))
	assert.Equal(t, 500, StatusOf("no such type"))
}

func TestCreateMapsTheSpec(t *testing.T) {
	var got provider.Spec
	created := time.Date(2026, 12, 5, 1, 2, 3, 456789000, time.FixedZone("x", 3600))
	s := serve(t, &fake{create: func(_ context.Context, spec provider.Spec) (provider.Status, error) {
		got = spec
		return provider.Status{ID: "gym-1", State: provider.StateRunning, Image: spec.Image, Created: created,
			Placement: "local", TTL: 90 * time.Second, Owner: "0123456789ab"}, nil
	}})
	resp, body := s.do(t, "POST", "/v1/sandboxes", `{"image":"/i/busybox.sif","env":{"A":"1"},"workdir":"/w",
		"files":{"/sandbox/x.txt":"hello"},"resources":{"cpu":1.5,"memory_mib":512,"gpu":0,"gpu_type":""},
		"binds":["/data:/data:ro"],"ttl_s":90,"metadata":{"run":"r1","n":3,"tags":["a"]}}`)
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Equal(t, provider.Spec{
		Image: "/i/busybox.sif", Env: map[string]string{"A": "1"}, Workdir: "/w",
		Files:     map[string][]byte{"/sandbox/x.txt": []byte("hello")},
		Resources: resources.Resources{CPU: 1.5, MemoryMiB: 512},
		Binds:     []string{"/data:/data:ro"}, TTL: 90 * time.Second,
		Metadata: map[string]string{"run": "r1", "n": "3", "tags": `["a"]`},
	}, got)
	assert.Equal(t, map[string]any{
		"id": "gym-1", "state": "running", "reason": "", "image": "/i/busybox.sif", "instance": "", "pid": 0.0,
		"created": "2026-12-05T00:02:03.456789+00:00", "placement": "local", "node": "", "job_id": "",
		"ttl_s": 90.0, "owner": "0123456789ab", "foreign": false, "executor": "",
	}, decode(t, body))
}

func TestCreateRefusesWhatItCannotRead(t *testing.T) {
	s := serve(t, &fake{create: func(context.Context, provider.Spec) (provider.Status, error) {
		t.Error("an invalid request reached the provider")
		return provider.Status{}, nil
	}})
	for body, want := range map[string]string{
		`{"image":"x","imgae":"y"}`:             `unknown field "imgae"`,
		`{"image":"x","ttl_s":-1}`:              "ttl_s: want seconds",
		`{"image":"x","resources":{"cpu":"2"}}`: "resources.cpu: want float64",
		`{"image":"x"} {}`:                      "data after the JSON object",
		`[1]`:                                   "want a JSON object",
		`{"image":`:                             "request body",
		`{"image":"x","files":{"/a":"` + strings.Repeat("x", 16<<20) + `","/b":"y"}}`: "seed files may hold 16777216 bytes",
	} {
		resp, got := s.do(t, "POST", "/v1/sandboxes", body)
		assert.Equal(t, 400, resp.StatusCode, body)
		m := decode(t, got)
		assert.Equal(t, "invalid", m["error_type"], body)
		assert.Contains(t, m["message"], want, body)
	}
}

func TestStatusAndList(t *testing.T) {
	s := serve(t, &fake{
		status: func(_ context.Context, ids []string) ([]provider.Status, error) {
			switch ids[0] {
			case "gym-closed":
				return []provider.Status{{ID: "gym-closed", State: provider.StateStopped, Reason: "closed"}}, nil
			case "gym-x.0123456789ab":
				return nil, nil // another owner's: no handle here names it
			case "gym-lost":
				return []provider.Status{{ID: "gym-lost", State: provider.StateLost, Reason: "node node2 DOWN: power"}}, nil
			}
			return nil, fmt.Errorf("sandbox %s: %w", ids[0], provider.ErrNotFound)
		},
		list: func(context.Context) ([]provider.Status, error) {
			return []provider.Status{{ID: "gym-a", State: provider.StateRunning}},
				&provider.SkippedError{Skipped: []provider.SkippedHandle{{Path: "/s/bad.json", Reason: "truncated"}}}
		},
	})
	resp, body := s.do(t, "GET", "/v1/sandboxes/gym-closed", "")
	require.Equal(t, 200, resp.StatusCode, body)
	m := decode(t, body)
	assert.Equal(t, "stopped", m["state"])
	assert.Nil(t, m["created"], "an unknown creation time is null")

	resp, body = s.do(t, "GET", "/v1/sandboxes/gym-lost", "")
	require.Equal(t, 200, resp.StatusCode, body)
	m = decode(t, body)
	assert.Equal(t, "error", m["state"], "NeMo Gym knows no lost")
	assert.Equal(t, "lost: node node2 DOWN: power", m["reason"])

	for _, id := range []string{"gym-never", "gym-x.0123456789ab"} {
		resp, body = s.do(t, "GET", "/v1/sandboxes/"+id, "")
		assert.Equal(t, 404, resp.StatusCode, id)
		assert.Equal(t, "not_found", decode(t, body)["error_type"], id)
	}

	resp, body = s.do(t, "GET", "/v1/sandboxes", "")
	require.Equal(t, 200, resp.StatusCode, body)
	m = decode(t, body)
	assert.Len(t, m["sandboxes"], 1)
	assert.Equal(t, []any{map[string]any{"path": "/s/bad.json", "reason": "truncated"}}, m["skipped"])
}

func TestCloseAndKillExec(t *testing.T) {
	var closed, killed []string
	s := serve(t, &fake{
		close: func(_ context.Context, id string) error { closed = append(closed, id); return nil },
		killExec: func(_ context.Context, id, execID string) error {
			killed = append(killed, id+"/"+execID)
			return nil
		},
	})
	for range 2 {
		resp, body := s.do(t, "DELETE", "/v1/sandboxes/gym-1", "")
		assert.Equal(t, 200, resp.StatusCode)
		assert.Equal(t, map[string]any{"id": "gym-1"}, decode(t, body))
	}
	assert.Equal(t, []string{"gym-1", "gym-1"}, closed)

	resp, body := s.do(t, "POST", "/v1/sandboxes/gym-1/kill_exec", `{"exec_id":"e1"}`)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "{}\n", body)
	resp, _ = s.do(t, "POST", "/v1/sandboxes/gym-1/kill_exec", `{}`)
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, []string{"gym-1/e1"}, killed)
}

func TestEndpoint(t *testing.T) {
	sts := map[string]provider.Status{
		"gym-local":   {ID: "gym-local", State: provider.StateRunning, Placement: "local"},
		"gym-slurm":   {ID: "gym-slurm", State: provider.StateRunning, Placement: "slurm", Node: "node7"},
		"gym-pending": {ID: "gym-pending", State: provider.StateStarting, Placement: "slurm", Reason: "job 9 PENDING"},
		"gym-dead":    {ID: "gym-dead", State: provider.StateStopped, Placement: "local", Reason: "instance is gone"},
	}
	s := serve(t, &fake{status: func(_ context.Context, ids []string) ([]provider.Status, error) {
		return []provider.Status{sts[ids[0]]}, nil
	}})
	for _, c := range []struct {
		id, port string
		status   int
		want     string
	}{
		{"gym-local", "8080", 200, "http://127.0.0.1:8080"},
		{"gym-slurm", "65535", 200, "http://node7:65535"},
		{"gym-pending", "80", 503, "unavailable"},
		{"gym-dead", "80", 502, "sandbox"},
		{"gym-local", "0", 400, "invalid"},
		{"gym-local", "x", 400, "invalid"},
		{"gym-local", "", 400, "invalid"},
	} {
		resp, body := s.do(t, "GET", "/v1/sandboxes/"+c.id+"/endpoint?port="+c.port, "")
		assert.Equal(t, c.status, resp.StatusCode, "%+v: %s", c, body)
		m := decode(t, body)
		if c.status == 200 {
			assert.Equal(t, map[string]any{"endpoint": c.want, "headers": map[string]any{}}, m)
		} else {
			assert.Equal(t, c.want, m["error_type"], "%+v", c)
		}
	}
}

func TestGCSelectsAsTheCLIAndReportsFailures(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex // gc closes in parallel
	var closed []string
	s := serve(t, &fake{
		list: func(context.Context) ([]provider.Status, error) {
			return []provider.Status{
				{ID: "gym-running", State: provider.StateRunning},
				{ID: "gym-dead", State: provider.StateStopped},
				{ID: "gym-old", State: provider.StateRunning, Created: now.Add(-time.Hour), TTL: time.Minute},
				{ID: "gym-cut", State: provider.StateError, Reason: "job FAILED"},
				{ID: "gym-x.0123456789ab", State: provider.StateStopped, Foreign: true, Reason: "foreign"},
			}, nil
		},
		close: func(_ context.Context, id string) error {
			if id == "gym-cut" {
				return fmt.Errorf("squeue: %w", provider.ErrUnavailable)
			}
			mu.Lock()
			defer mu.Unlock()
			closed = append(closed, id)
			return nil
		},
	}, func(o *Options) { o.Now = func() time.Time { return now } })

	resp, body := s.do(t, "POST", "/v1/gc", `{"dry_run":true}`)
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Equal(t, []any{"gym-dead", "gym-old", "gym-cut"}, decode(t, body)["closed"])
	mu.Lock()
	assert.Empty(t, closed, "a dry run closes nothing")
	mu.Unlock()

	resp, body = s.do(t, "POST", "/v1/gc", "")
	require.Equal(t, 200, resp.StatusCode, body)
	m := decode(t, body)
	assert.Equal(t, []any{"gym-dead", "gym-old"}, m["closed"])
	assert.Equal(t, []any{map[string]any{"id": "gym-cut", "error_type": "unavailable", "message": "squeue: " + provider.ErrUnavailable.Error()}}, m["failed"])

	resp, body = s.do(t, "POST", "/v1/gc", `{"dry_run":true,"all_owners":true}`)
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Contains(t, decode(t, body)["closed"], "gym-x.0123456789ab")
}

func TestCloseAll(t *testing.T) {
	var got provider.CloseAllOptions
	s := serve(t, &fake{closeAll: func(_ context.Context, o provider.CloseAllOptions) ([]string, error) {
		got = o
		return []string{"gym-1", "gym-2"}, nil
	}})
	resp, body := s.do(t, "POST", "/v1/close_all", `{"all_owners":true}`)
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Equal(t, []any{"gym-1", "gym-2"}, decode(t, body)["closed"])
	assert.True(t, got.AllOwners)
}
