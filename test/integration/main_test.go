package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// What the tests run against, found once by TestMain.
var (
	apptainerBin string // the real apptainer
	cgroupfsConf string // apptainer.conf with "systemd cgroups = no"
	hostBin      string // gym-host
	pluginBin    string // gym-apptainer-plugin

	sifImage     string // busybox.sif
	sandboxImage string // busybox-sandbox/ (directory image)
	ociArchive   string // busybox-oci.tar

	// skipAll, when set, is why every test is skipped (prerequisites
	// missing outside CI).
	skipAll string
)

const setupHint = "install them with scripts/setup.sh (as root: apptainer, the cgroupfs apptainer.conf and the test images)"

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	missing := findPrerequisites()
	if len(missing) > 0 {
		msg := "integration prerequisites missing:\n  - " + strings.Join(missing, "\n  - ") + "\n" + setupHint
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "FAIL: "+msg+"\n(CI=true: missing prerequisites fail the run instead of skipping it)")
			return 1
		}
		skipAll = msg
		return m.Run()
	}
	dir, cleanup, err := binaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: "+err.Error())
		return 1
	}
	defer cleanup()
	hostBin = filepath.Join(dir, "gym-host")
	pluginBin = filepath.Join(dir, "gym-apptainer-plugin")
	return m.Run()
}

// findPrerequisites fills the globals and returns what is missing.
func findPrerequisites() []string {
	var missing []string
	apptainerBin = "/usr/local/bin/apptainer"
	if p, err := exec.LookPath("apptainer"); err == nil {
		apptainerBin = p
	}
	if abs, err := filepath.Abs(apptainerBin); err == nil {
		apptainerBin = abs
	}
	if !isExecutable(apptainerBin) {
		missing = append(missing, "apptainer: not on PATH and not at /usr/local/bin/apptainer")
	} else if out, err := exec.Command(apptainerBin, "version").Output(); err != nil {
		missing = append(missing, fmt.Sprintf("apptainer at %s does not run (`apptainer version`: %v)", apptainerBin, err))
	} else if v := strings.TrimSpace(string(out)); !strings.HasPrefix(v, "1.") {
		missing = append(missing, fmt.Sprintf("apptainer at %s is version %q; these tests need 1.x (1.4.5 measured)", apptainerBin, v))
	}

	cgroupfsConf = "/usr/local/etc/apptainer/apptainer-cgroupfs.conf"
	if st, err := os.Stat(cgroupfsConf); err != nil || !st.Mode().IsRegular() {
		missing = append(missing, cgroupfsConf+": missing (scripts/install-apptainer.sh writes it)")
	}

	images := os.Getenv("GYM_TEST_IMAGES")
	if images == "" {
		images = "/var/lib/gym-apptainer/images"
	}
	sifImage = filepath.Join(images, "busybox.sif")
	sandboxImage = filepath.Join(images, "busybox-sandbox")
	ociArchive = filepath.Join(images, "busybox-oci.tar")
	for _, img := range []struct {
		path string
		dir  bool
	}{{sifImage, false}, {sandboxImage, true}, {ociArchive, false}} {
		st, err := os.Stat(img.path)
		switch {
		case err != nil:
			missing = append(missing, fmt.Sprintf("test image %s: %v (scripts/build-test-images.sh builds it; GYM_TEST_IMAGES=%s)", img.path, err, images))
		case st.IsDir() != img.dir:
			missing = append(missing, fmt.Sprintf("test image %s: wrong kind (directory=%v); rebuild with GYM_IMAGES_FORCE=1 scripts/build-test-images.sh", img.path, st.IsDir()))
		}
	}
	return missing
}

// binaries returns a directory holding gym-host, gym-apptainer-plugin and
// gym-executor: $GYM_BIN_DIR when all are there, else a temp dir they are
// built into.
func binaries() (dir string, cleanup func(), err error) {
	if d := os.Getenv("GYM_BIN_DIR"); d != "" &&
		isExecutable(filepath.Join(d, "gym-host")) && isExecutable(filepath.Join(d, "gym-apptainer-plugin")) &&
		isExecutable(filepath.Join(d, "gym-executor")) {
		abs, err := filepath.Abs(d)
		if err != nil {
			return "", nil, err
		}
		return abs, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "gym-integration-bin-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	goBin := "go"
	if _, err := exec.LookPath(goBin); err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goBin, "build", "-o", tmp+"/",
		"github.com/gym-apptainer/gym-apptainer/cmd/gym-host",
		"github.com/gym-apptainer/gym-apptainer/cmd/gym-apptainer-plugin")
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("building gym-host and gym-apptainer-plugin: %v\n%s", err, out)
	}
	// The executor, beside the plugin as scripts/setup.sh puts it: static,
	// since it runs inside the images.
	cmd = exec.Command(goBin, "build", "-o", tmp+"/", "github.com/gym-apptainer/gym-apptainer/cmd/gym-executor")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("building gym-executor: %v\n%s", err, out)
	}
	return tmp, cleanup, nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// requirePrerequisites skips the test when TestMain found something missing
// (outside CI; in CI the run has already failed).
func requirePrerequisites(t *testing.T) {
	t.Helper()
	if skipAll != "" {
		t.Skip(skipAll)
	}
}
