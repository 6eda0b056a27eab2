#!/usr/bin/env bash
# setup.sh - everything gym-apptainer needs on this machine, idempotent:
# the real Apptainer (built from Debian's source package), the small local
# test images, and the gym-host / gym-apptainer-plugin / gym-executor
# binaries in ./bin.
# Work already done is skipped, so re-running costs seconds.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=/usr/local/go/bin:$PATH
step() { printf '[setup] %s\n' "$*" >&2; }

step "apptainer"
"$repo/scripts/install-apptainer.sh"
step "test images"
"$repo/scripts/build-test-images.sh"
step "binaries -> $repo/bin"
(cd "$repo" && go build -trimpath -o "$repo/bin/" ./cmd/gym-host ./cmd/gym-apptainer-plugin ./cmd/gym-apptainer-node)
# The executor runs inside every sandbox, whose image may have no libc (or
# another one): it must be static.
if [[ -d $repo/cmd/gym-executor ]]; then
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$repo/bin/" ./cmd/gym-executor)
fi
step "done"
