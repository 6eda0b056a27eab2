// Command gym-apptainer-plugin is the Apptainer sandbox provider, run by
// gym-host as a go-plugin subprocess. It is not meant to be run by hand:
// configuration comes in from the host, plugin.Serve does the rest.
//
// On SLURM compute nodes the same binary is the node-side agent: the hidden
// subcommands holder, node-exec and reap (package slurm/node) run inside the
// sandbox's job instead of the plugin.
//
// The hidden subcommand pool runs one `gym-host pool` operation (pool.go).
//
// In gym-host's daemon mode, the hidden subcommand daemon serves many
// gym-host invocations from one long-lived process (plugin.ServeDaemon).
package main

import (
	"fmt"
	"os"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

func main() {
	if len(os.Args) > 1 && node.IsSubcommand(os.Args[1]) {
		os.Exit(node.Main(os.Args[1:]))
	}
	if len(os.Args) == 2 && os.Args[1] == plugin.PoolSubcommand {
		os.Exit(poolMain(os.Stdin, os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == plugin.DaemonSubcommand {
		os.Exit(plugin.ServeDaemon(newProvider, os.Args[2:]))
	}
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println("gym-apptainer-plugin", plugin.Version)
		return
	}
	plugin.Serve(newProvider)
}
