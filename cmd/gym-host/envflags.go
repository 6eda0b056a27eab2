package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// envHelp is shared by every --env flag: the value form leaks into argv.
const envHelp = "set env var `KEY[=VALUE]`; KEY alone takes the value from gym-host's environment " +
	"(prefer it: KEY=VALUE puts the value in gym-host's argv, visible to ps); repeatable"

const envFileHelp = "read env vars from `FILE`, KEY=VALUE lines (# comments; values taken literally); " +
	"--env wins over it"

// validEnvKey is the POSIX shell name rule: a key outside it could not be
// read by the command's shell anyway, so it is refused up front.
func validEnvKey(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		ok := c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// buildEnv merges an env file and --env flags, the flags winning. It
// returns nil when neither sets anything.
func buildEnv(flags []string, envFile string, lookup func(string) (string, bool)) (map[string]string, error) {
	env := map[string]string{}
	if envFile != "" {
		data, err := os.ReadFile(envFile)
		if err != nil {
			return nil, fmt.Errorf("read --env-file: %w", err)
		}
		if err := parseEnvFile(envFile, data, env); err != nil {
			return nil, err
		}
	}
	for _, f := range flags {
		k, v, hasValue := strings.Cut(f, "=")
		if !validEnvKey(k) {
			return nil, usageErrorf("--env %q: %q is not a valid variable name (letters, digits and _, not starting with a digit)", redactEnv(f), k)
		}
		if !hasValue {
			var ok bool
			if v, ok = lookup(k); !ok {
				return nil, usageErrorf("--env %s: %s is not set in gym-host's environment (export it, or use --env %s=VALUE)", k, k, k)
			}
		}
		env[k] = v
	}
	if len(env) == 0 {
		return nil, nil
	}
	return env, nil
}

// redactEnv keeps an --env argument's key and drops its value, which may be
// a secret, from messages.
func redactEnv(f string) string {
	if k, _, ok := strings.Cut(f, "="); ok {
		return k + "=…"
	}
	return f
}

func parseEnvFile(name string, data []byte, env map[string]string) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSuffix(sc.Text(), "\r")
		trimmed := strings.TrimSpace(text)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		k, v, ok := strings.Cut(text, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return usageErrorf("%s:%d: want KEY=VALUE, got %q", name, line, k)
		}
		if !validEnvKey(k) {
			return usageErrorf("%s:%d: %q is not a valid variable name", name, line, k)
		}
		env[k] = v
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read --env-file %s: %w", name, err)
	}
	return nil
}

// parseTimeout reads a timeout: a Go duration ("90s", "2m") or plain seconds
// ("30", "1.5"). "" and 0 mean the config's default (0); "none" means no
// timeout (negative, as provider.ExecRequest has it).
func parseTimeout(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", "0":
		return 0, nil
	case "none":
		return -1, nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w, or none", err)
	}
	return d, nil
}

// parseDuration reads a Go duration or plain seconds; negative is refused.
func parseDuration(s string) (time.Duration, error) {
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f > math.MaxInt64/float64(time.Second) {
			return 0, fmt.Errorf("%q: not a usable number of seconds", s)
		}
		d = time.Duration(f * float64(time.Second))
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("%q: want a duration like 30s, 2m, 1h30m or plain seconds", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: must not be negative", s)
	}
	return d, nil
}

// parseSize reads a byte count: plain bytes, or with a KiB, MiB or GiB (also
// K, M, G) suffix.
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n < 0 || n > (1<<31)/mult {
		return 0, fmt.Errorf("%q: want a size in bytes up to 2GiB, such as 65536, 512KiB or 4MiB", s)
	}
	return int(n * mult), nil
}
