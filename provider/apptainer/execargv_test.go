package apptainer

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExecArgv(t *testing.T) {
	prefix := []string{"/usr/bin/apptainer", "-c", "/etc/gym.conf"}
	cases := []struct {
		name string
		spec execSpec
		want []string
	}{
		{
			name: "plain",
			spec: execSpec{Instance: "gym-1", Command: "echo hi"},
			want: []string{"/usr/bin/apptainer", "-c", "/etc/gym.conf", "exec", "--cleanenv", "--no-eval",
				"--drop-caps", "CAP_SYS_ADMIN", "instance://gym-1", "/bin/sh", "-c", wrapperScript, "sh", "echo hi"},
		},
		{
			name: "cwd and extra args keep their order",
			spec: execSpec{Cwd: "/work dir", Extra: []string{"--drop-caps", "CAP_SYS_RESOURCE"}, Instance: "gym-1", Command: "pwd"},
			want: []string{"/usr/bin/apptainer", "-c", "/etc/gym.conf", "exec", "--cleanenv", "--no-eval", "--pwd", "/work dir",
				"--drop-caps", "CAP_SYS_ADMIN,CAP_SYS_RESOURCE", "instance://gym-1", "/bin/sh", "-c", wrapperScript, "sh", "pwd"},
		},
		{
			name: "args follow the command",
			spec: execSpec{Instance: "gym-1", Command: copyInScript, Args: []string{"/sandbox/.gym-transfer/u", "/etc/a b'c"}},
			want: []string{"/usr/bin/apptainer", "-c", "/etc/gym.conf", "exec", "--cleanenv", "--no-eval",
				"--drop-caps", "CAP_SYS_ADMIN", "instance://gym-1", "/bin/sh", "-c", wrapperScript, "sh", copyInScript, "/sandbox/.gym-transfer/u", "/etc/a b'c"},
		},
		{
			name: "su form",
			spec: execSpec{Cwd: "/w", Instance: "gym-1", Command: "id -u", User: "alice"},
			want: []string{"/usr/bin/apptainer", "-c", "/etc/gym.conf", "exec", "--cleanenv", "--no-eval", "--pwd", "/w",
				"--drop-caps", "CAP_SYS_ADMIN", "instance://gym-1", "/bin/sh", "-c", suWrapperScript, "sh", "alice", "id -u"},
		},
		{
			name: "command in a file",
			spec: execSpec{Instance: "gym-1", CommandFile: "/sandbox/.gym-transfer/c1"},
			want: []string{"/usr/bin/apptainer", "-c", "/etc/gym.conf", "exec", "--cleanenv", "--no-eval",
				"--drop-caps", "CAP_SYS_ADMIN", "instance://gym-1", "/bin/sh", "-c", fileWrapperScript, "sh", "/sandbox/.gym-transfer/c1"},
		},
		{
			name: "su form with the command in a file",
			spec: execSpec{Instance: "gym-1", CommandFile: "/sandbox/.gym-transfer/c1", User: "alice"},
			want: []string{"/usr/bin/apptainer", "-c", "/etc/gym.conf", "exec", "--cleanenv", "--no-eval",
				"--drop-caps", "CAP_SYS_ADMIN", "instance://gym-1", "/bin/sh", "-c", suFileWrapperScript, "sh", "alice", "/sandbox/.gym-transfer/c1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := execArgv(prefix, tc.spec)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, []string{"/usr/bin/apptainer", "-c", "/etc/gym.conf"}, prefix, "prefix must not be modified")
		})
	}
}

// CAP_SYS_ADMIN is always dropped; a --drop-caps of the config gets it added
// to its list (apptainer keeps only the last --drop-caps).
func TestWithDropCaps(t *testing.T) {
	cases := []struct{ extra, want []string }{
		{nil, []string{"--drop-caps", "CAP_SYS_ADMIN"}},
		{[]string{"--no-privs"}, []string{"--drop-caps", "CAP_SYS_ADMIN", "--no-privs"}},
		{[]string{"--drop-caps", "CAP_SYS_RESOURCE", "-q"}, []string{"--drop-caps", "CAP_SYS_ADMIN,CAP_SYS_RESOURCE", "-q"}},
		{[]string{"--drop-caps=CAP_NET_RAW"}, []string{"--drop-caps=CAP_SYS_ADMIN,CAP_NET_RAW"}},
	}
	for _, tc := range cases {
		extra := slices.Clone(tc.extra)
		assert.Equal(t, tc.want, withDropCaps(extra, "CAP_SYS_ADMIN"), "%q", tc.extra)
		assert.Equal(t, tc.extra, extra, "the config's args are not modified")
	}
}

func TestExecEnvSortedWithMarkerLast(t *testing.T) {
	got := execEnv(map[string]string{"ZED": "z", "A": "a=b", "EMPTY": "", "mid": "x y"}, "exec-1")
	assert.Equal(t, []string{
		"APPTAINERENV_A=a=b",
		"APPTAINERENV_EMPTY=",
		"APPTAINERENV_ZED=z",
		"APPTAINERENV_mid=x y",
		"APPTAINERENV_GYM_EXEC_ID=exec-1",
	}, got)
	assert.Equal(t, []string{"APPTAINERENV_GYM_EXEC_ID=e"}, execEnv(nil, "e"))
}

// The wrapper must behave like `sh -c CMD`: $0 is sh, $# is 0 (or the
// internal args), and the marker comes first on stderr. Checked with the
// host's sh, the same POSIX sh semantics the container's /bin/sh has.
func TestWrapperScriptSemantics(t *testing.T) {
	cases := []struct {
		name       string
		cmd        string
		args       []string
		wantOut    string
		wantErr    string
		wantStatus int
	}{
		{"dollar zero and argc", `echo "$0 $#"`, nil, "sh 0\n", "", 0},
		{"exit code", `echo out; echo err >&2; exit 7`, nil, "out\n", "err\n", 7},
		{"helper variable is gone", `echo "[${__gym_c-unset}]"`, nil, "[unset]\n", "", 0},
		{"quotes and metacharacters survive", `printf '%s\n' "a 'b' \"c\" $((1+2))" ; echo $(echo sub)`, nil, "a 'b' \"c\" 3\nsub\n", "", 0},
		{"args are positional", `printf '[%s]' "$@"; echo " $#"`, []string{"a b", "$(evil)", ""}, "[a b][$(evil)][] 3\n", "", 0},
		{"multi-line command", "x=1\nif [ $x = 1 ]; then echo one; fi", nil, "one\n", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			argv := append([]string{"-c", wrapperScript, "sh", tc.cmd}, tc.args...)
			var out, errb bytes.Buffer
			cmd := exec.Command("/bin/sh", argv...)
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			status := 0
			if ee, ok := err.(*exec.ExitError); ok {
				status = ee.ExitCode()
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tc.wantStatus, status)
			assert.Equal(t, tc.wantOut, out.String())
			assert.Equal(t, startMarker+tc.wantErr, errb.String())
		})
	}
}

// The su wrapper turns a numeric user into its name from /etc/passwd and
// hands su the command untouched. A fake su on PATH prints what it got.
func TestSuWrapperScript(t *testing.T) {
	dir := t.TempDir()
	fakeSu := "#!/bin/sh\nprintf '[%s]' \"$@\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "su"), []byte(fakeSu), 0o755))
	cases := []struct{ user, want string }{
		{"alice", "[-p][-s][/bin/sh][alice][-c][echo \"$HOME\"; exit 3]"},
		{"0", "[-p][-s][/bin/sh][root][-c][echo \"$HOME\"; exit 3]"}, // uid 0 is root in every passwd
		{"987654", "[-p][-s][/bin/sh][987654][-c][echo \"$HOME\"; exit 3]"},
	}
	for _, tc := range cases {
		t.Run(tc.user, func(t *testing.T) {
			var out, errb bytes.Buffer
			cmd := exec.Command("/bin/sh", "-c", suWrapperScript, "sh", tc.user, `echo "$HOME"; exit 3`)
			cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin"}
			cmd.Stdout, cmd.Stderr = &out, &errb
			require.NoError(t, cmd.Run())
			assert.Equal(t, tc.want, out.String())
			assert.Equal(t, startMarker, errb.String())
		})
	}
}
