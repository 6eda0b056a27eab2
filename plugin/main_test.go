package plugin

import (
	"io"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// helperEnv turns the test binary into a plugin (go-plugin's helper-process
// pattern): host tests point a Host at os.Args[0] with this variable set.
const helperEnv = "GYM_PLUGIN_TEST_HELPER"

// killFileEnv names the file the helper plugin's fake records KillExec in.
const killFileEnv = "GYM_PLUGIN_TEST_KILL_FILE"

// cancelFileEnv names the file the helper plugin's block exec notes its
// cancellation in.
const cancelFileEnv = "GYM_PLUGIN_TEST_CANCEL_FILE"

// hostHelperEnv turns the test binary into a host that runs one blocking
// exec through a per-call helper plugin (see runHostHelper).
const hostHelperEnv = "GYM_PLUGIN_TEST_HOST"

func TestMain(m *testing.M) {
	if os.Getenv(hostHelperEnv) == "1" {
		os.Exit(runHostHelper())
	}
	if os.Getenv(helperEnv) == "1" {
		if len(os.Args) > 1 && os.Args[1] == DaemonSubcommand {
			os.Exit(ServeDaemon(helperFactory, os.Args[2:]))
		}
		Serve(helperFactory) // exits the process
		return
	}
	// go-plugin's in-process test harness logs at debug level to stderr;
	// keep test output readable unless asked.
	if os.Getenv("GYM_TEST_LOG") == "" {
		hclog.DefaultOutput = io.Discard
	}
	os.Exit(m.Run())
}
