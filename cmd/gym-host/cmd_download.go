package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

var downloadCmd = &command{
	name:    "download",
	usage:   "ID REMOTE LOCAL [flags]",
	summary: "copy a file out of a sandbox",
	desc: `Copies the file REMOTE of sandbox ID to the host path LOCAL. LOCAL is written
atomically: it is either the whole file or untouched. Directories above
LOCAL that do not exist are made (mode 0755 less the umask).`,
	examples: []string{
		"gym-host download gym-1a2b /sandbox/result.json ./result.json",
	},
	setup: func(fs *pflag.FlagSet) actionFunc {
		return func(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error {
			args, err := nargs(fs, 3, 3, "ID REMOTE LOCAL")
			if err != nil {
				return err
			}
			id, remote := args[0], args[1]
			local, err := filepath.Abs(args[2])
			if err != nil {
				return fmt.Errorf("download to %s: %w", args[2], err)
			}
			return a.withProvider(opts, func(p provider.Provider) error {
				if err := p.Download(ctx, id, remote, local); err != nil {
					return fmt.Errorf("download %s:%s to %s: %w", id, remote, args[2], err)
				}
				return writeTransfer(a, opts, id, local, remote)
			})
		}
	},
}
