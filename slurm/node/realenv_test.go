package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
)

// The tests against the real apptainer and SLURM skip when those are missing,
// except with CI=true (.ci/run), where a missing prerequisite fails.
func missingPrereq(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := "prerequisite missing: " + fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: missing prerequisites fail instead of skipping)")
	}
	t.Skip(msg)
}

// realApptainer returns the apptainer binary and the busybox SIF.
func realApptainer(t *testing.T) (bin, sif string) {
	t.Helper()
	bin = "/usr/local/bin/apptainer"
	if p, err := exec.LookPath("apptainer"); err == nil {
		bin, _ = filepath.Abs(p)
	}
	if _, err := os.Stat(bin); err != nil {
		missingPrereq(t, "apptainer: %v (scripts/setup.sh installs it)", err)
	}
	images := os.Getenv("GYM_TEST_IMAGES")
	if images == "" {
		images = "/var/lib/gym-apptainer/images"
	}
	sif = filepath.Join(images, "busybox.sif")
	if _, err := os.Stat(sif); err != nil {
		missingPrereq(t, "test image: %v (scripts/build-test-images.sh builds it)", err)
	}
	return bin, sif
}

func randomName(t *testing.T) string {
	b := make([]byte, 6)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return "gym-test-" + hex.EncodeToString(b)
}

// apptainerEnv runs apptainer with a private instance registry.
type apptainerEnv struct {
	t         *testing.T
	bin       string
	configDir string
	// host, when set and not this machine's name, is the hostname apptainer
	// runs under (a UTS namespace of its own; root only): apptainer keeps
	// instances per hostname, and a node of a test cluster made of
	// namespaces of this machine (scripts/slurm-cluster.sh up --nodes N)
	// has a name of its own.
	host string
}

func (a apptainerEnv) env() []string {
	return append(cleanEnv(), "APPTAINER_CONFIGDIR="+a.configDir)
}

func (a apptainerEnv) run(args ...string) (string, string, error) {
	argv := append([]string{a.bin}, args...)
	if own, _ := os.Hostname(); a.host != "" && a.host != strings.SplitN(own, ".", 2)[0] {
		argv = append([]string{"unshare", "--uts", "--", "/bin/sh", "-c", `hostname "$0" && exec "$@"`, a.host}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = a.env()
	cmd.Dir = "/"
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// instances lists the instance names in the private registry.
func (a apptainerEnv) instances() []string {
	a.t.Helper()
	out, stderr, err := a.run(apptainercli.List(nil, "")...)
	require.NoError(a.t, err, stderr)
	list, err := apptainercli.ParseList([]byte(out))
	require.NoError(a.t, err)
	var names []string
	for _, in := range list {
		names = append(names, in.Name)
	}
	return names
}

func (a apptainerEnv) listedPID(name string) int {
	a.t.Helper()
	out, stderr, err := a.run(apptainercli.List(nil, name)...)
	require.NoError(a.t, err, stderr)
	list, err := apptainercli.ParseList([]byte(out))
	require.NoError(a.t, err)
	if len(list) != 1 {
		return 0
	}
	return list[0].PID
}
