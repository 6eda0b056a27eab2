package config

import (
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gym-apptainer/gym-apptainer/internal/yamlstrict"
)

type yamlNode = yaml.Node

// decoder walks a yaml.Node tree against rootSchema. Walking the tree
// ourselves, rather than unmarshalling into tagged structs, is what lets
// every error carry the full dotted key and the line, and lets null be
// accepted exactly where NeMo Gym accepts None. It is the yamlstrict.Sink
// of the shared readers the schema's leaves use.
type decoder struct {
	cfg *Config
	// file is the config file; "" for command-line overrides.
	file string
	// baseDir resolves relative directories; "" means the working directory.
	baseDir string
	// lines maps each key seen to the line of its value, so that Validate's
	// key-only errors can be placed in the file afterwards.
	lines map[string]int
	errs  []*FieldError
}

// Fail records a problem; an override has a node but no file, so no line.
func (d *decoder) Fail(v *yamlNode, key, format string, args ...any) {
	e := &FieldError{File: d.file, Key: key, Msg: fmt.Sprintf(format, args...)}
	if v != nil && d.file != "" {
		e.Line = v.Line
	}
	d.errs = append(d.errs, e)
}

// fail is Fail under the name overrides.go uses.
func (d *decoder) fail(v *yamlNode, key, format string, args ...any) {
	d.Fail(v, key, format, args...)
}

// Place records where key's value is, for lineOf.
func (d *decoder) Place(key string, line int) {
	d.lines[key] = line
}

func (d *decoder) walk(s *schema, key string, v *yamlNode) {
	v = yamlstrict.Deref(v)
	switch {
	case s.leaf != nil:
		s.leaf(d, key, v)
	case s.strMap != nil:
		d.stringMap(s.strMap(d.cfg), key, v)
	default:
		d.mapping(s, key, v)
	}
}

func (d *decoder) mapping(s *schema, key string, v *yamlNode) {
	if yamlstrict.IsNull(v) {
		return
	}
	if v.Kind != yaml.MappingNode {
		if key == "" {
			d.Fail(v, key, "the top level must be a mapping holding sandbox: and/or gym:, got %s", yamlstrict.Describe(v))
		} else {
			d.Fail(v, key, "must be a mapping, got %s", yamlstrict.Describe(v))
		}
		return
	}
	yamlstrict.EachKey(d, key, v, func(name, full string, k, val *yamlNode) {
		child, ok := s.fields[name]
		if !ok {
			d.Fail(k, full, "%s", yamlstrict.UnknownKey(name, s.keys()))
			return
		}
		d.walk(child, full, val)
	})
}

func (d *decoder) stringMap(field *map[string]string, key string, v *yamlNode) {
	if yamlstrict.IsNull(v) {
		return
	}
	if v.Kind != yaml.MappingNode {
		d.Fail(v, key, "must be a mapping of strings to strings, got %s", yamlstrict.Describe(v))
		return
	}
	m := map[string]string{}
	ok := true
	yamlstrict.EachKey(d, key, v, func(name, full string, _, val *yamlNode) {
		s, err := metadataValue(val)
		if err != nil {
			d.Fail(val, full, "%v", err)
			ok = false
		}
		m[name] = s
	})
	if ok {
		*field = m
	}
}

// lineOf places a key in the file: list entries have their own line, any
// other key the line of its value; defaults have none (0).
func (d *decoder) lineOf(key string) int {
	if l, ok := d.lines[key]; ok {
		return l
	}
	if i := strings.LastIndexByte(key, '['); i > 0 {
		return d.lines[key[:i]]
	}
	return 0
}

// metadataValue is a default_metadata value as text. NeMo Gym takes any
// value there (the entries merge into SandboxSpec.metadata); ours are
// strings, so a scalar keeps its text as written (2, true), null is empty,
// and a list or mapping becomes compact JSON.
func metadataValue(v *yamlNode) (string, error) {
	v = yamlstrict.Deref(v)
	switch {
	case yamlstrict.IsNull(v):
		return "", nil
	case v.Kind == yaml.ScalarNode:
		return v.Value, nil
	}
	var x any
	if err := v.Decode(&x); err != nil {
		return "", fmt.Errorf("cannot read the value: %v", err)
	}
	b, err := json.Marshal(x)
	if err != nil {
		return "", fmt.Errorf("cannot hold this value as text (use string keys): %v", err)
	}
	return string(b), nil
}
