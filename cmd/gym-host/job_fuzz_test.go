package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzLoadJob feeds loadJob arbitrary job files. It must not panic; a
// refusal is a usage error that starts with the file's name; an accepted job
// holds only what `gym-host run` relies on without checking again, and reads
// the same twice.
func FuzzLoadJob(f *testing.F) {
	f.Add([]byte("image: x.sif\nsteps: [{run: 'true'}]\nenv: {SET_TOKEN: null}\n"))
	f.Add([]byte("image: docker://python:3.12\nsandboxes: 3\nsteps: [{name: a, run: x, timeout: none}]\ncollect: [{remote: /a, local: 'o/{id}'}]\n"))
	lookup := func(k string) (string, bool) {
		if strings.HasPrefix(k, "SET") {
			return "value-of-" + k, true
		}
		return "", false
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		// A host file that files[].local may name.
		if err := os.WriteFile(filepath.Join(dir, "seed.txt"), []byte("seed"), 0o600); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "job.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		job, err := loadJob(path, lookup)
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("a refused job file is not a usage error (exit 2): %v", err)
			}
			if !strings.HasPrefix(err.Error(), path) {
				t.Fatalf("the error does not start with the file %s: %v", path, err)
			}
			return
		}
		checkJob(t, job)
		again, err := loadJob(path, lookup)
		if err != nil || !reflect.DeepEqual(job, again) {
			t.Fatalf("a second read of the same job file differs: %v", err)
		}
	})
}

func checkJob(t *testing.T, job *Job) {
	t.Helper()
	switch {
	case job.Image == "":
		t.Fatal("accepted a job without an image")
	case job.Sandboxes < 1:
		t.Fatalf("accepted sandboxes: %d", job.Sandboxes)
	case job.TTL < 0:
		t.Fatalf("accepted a negative ttl %v", job.TTL)
	case !filepath.IsAbs(job.Path):
		t.Fatalf("job path %q is not absolute", job.Path)
	}
	if err := job.Resources.Validate(); err != nil {
		t.Fatalf("accepted invalid resources: %v", err)
	}
	checkEnv := func(env map[string]string) {
		for k := range env {
			if !validEnvKey(k) {
				t.Fatalf("accepted env name %q", k)
			}
		}
	}
	checkEnv(job.Env)
	for _, b := range job.Binds {
		src, _, _ := strings.Cut(b, ":")
		if !filepath.IsAbs(src) {
			t.Fatalf("bind %q: its host side is not absolute", b)
		}
	}
	names := map[string]bool{}
	for _, s := range job.Steps {
		switch {
		case s.Name == "" || strings.ContainsAny(s.Name, " \t\n/]"):
			t.Fatalf("accepted step name %q", s.Name)
		case names[s.Name]:
			t.Fatalf("accepted the step name %q twice", s.Name)
		case strings.TrimSpace(s.Run) == "":
			t.Fatalf("accepted step %s without a command", s.Name)
		case s.Timeout < -1:
			t.Fatalf("step %s: accepted timeout %v", s.Name, s.Timeout)
		}
		names[s.Name] = true
		checkEnv(s.Env)
	}
	for _, f := range job.Files {
		switch {
		case !strings.HasPrefix(f.Remote, "/"):
			t.Fatalf("accepted a relative seed file remote %q", f.Remote)
		case (f.Local != "") == f.HasContent:
			t.Fatalf("seed file %s: want exactly one of local and content", f.Remote)
		case f.Local != "" && !filepath.IsAbs(f.Local):
			t.Fatalf("seed file %s: local %q is not absolute", f.Remote, f.Local)
		}
	}
	for _, c := range job.Collect {
		switch {
		case !strings.HasPrefix(c.Remote, "/"):
			t.Fatalf("accepted a relative collect remote %q", c.Remote)
		case !filepath.IsAbs(c.Local):
			t.Fatalf("collect %s: local %q is not absolute", c.Remote, c.Local)
		case job.Sandboxes > 1 && !strings.Contains(c.Local, "{sandbox}") && !strings.Contains(c.Local, "{id}"):
			t.Fatalf("collect %s: %d sandboxes would all write %s", c.Remote, job.Sandboxes, c.Local)
		}
	}
}
