#!/usr/bin/env bash
# test.sh - sets everything up, then runs every test: unit tests (no
# binaries needed), plugin tests, and the integration tests against the real
# apptainer. With CI=true a missing component fails the run instead of
# skipping the integration tests.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=/usr/local/go/bin:$PATH
cd "$repo"

"$repo/scripts/setup.sh"

# The --fakeroot tests need a subordinate id range for root; add one on a
# machine that has none (useradd gives every other user one).
if [ "$(id -u)" = 0 ] && ! grep -q '^root:' /etc/subuid 2>/dev/null; then
  echo "[test] adding root:300000:65536 to /etc/subuid and /etc/subgid (for --fakeroot tests)" >&2
  echo "root:300000:65536" >> /etc/subuid
  grep -q '^root:' /etc/subgid 2>/dev/null || echo "root:300000:65536" >> /etc/subgid
fi

# The SLURM tests run against a real cluster on this machine: three nodes
# (node1..node3, each slurmd in namespaces of its own; this host is the login
# node), so that sandboxes land on nodes other than gym-host's and an
# allocation spans nodes. GYM_TEST_SLURM_NODES=1 runs them on the quick
# one-node cluster instead.
echo "[test] slurm cluster (${GYM_TEST_SLURM_NODES:-3} nodes)" >&2
"$repo/scripts/slurm-cluster.sh" up --nodes "${GYM_TEST_SLURM_NODES:-3}"

export GYM_BIN_DIR="$repo/bin"
export GYM_TEST_IMAGES=${GYM_TEST_IMAGES:-/var/lib/gym-apptainer/images}

echo "[test] gofmt + go vet" >&2
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:" >&2; echo "$unformatted" >&2; exit 1; fi
go vet ./...

echo "[test] go test -race (unit and plugin tests)" >&2
go test -race -count=1 -timeout 20m $(go list ./... | grep -v /test/integration) "$@"

# Every fuzz target for ${GYM_FUZZ_TIME:-60s}, one after another; a crash
# fails the run (its input lands in the package's testdata/fuzz/).
echo "[test] fuzz targets, ${GYM_FUZZ_TIME:-60s} each" >&2
"$repo/scripts/fuzz.sh"

# The integration tests run verbose into a log so that skips are visible: in
# CI a skipped integration test means something was not tested, which fails
# the run.
echo "[test] integration tests against the real apptainer and slurm" >&2
log=$(mktemp -t gym-integration.XXXXXX.log)
rc=0
go test -race -count=1 -timeout 30m -v ./test/integration/ "$@" > "$log" 2>&1 || rc=$?
grep -E '^(=== RUN|--- (PASS|FAIL|SKIP))' "$log" | grep -cE '^--- PASS' | sed 's/^/[test] integration tests passed: /' >&2
grep -E '^\s*--- (FAIL|SKIP): ' "$log" >&2 || true
tail -n 3 "$log"
if [ "$rc" -ne 0 ]; then
  echo "[test] integration tests failed; full log: $log" >&2
  tail -n 60 "$log" >&2
  exit "$rc"
fi
if [ "${CI:-}" = true ] && grep -qE '^\s*--- SKIP: ' "$log"; then
  echo "[test] CI: integration tests were skipped (see above): a run that does not test everything is a failed run" >&2
  exit 1
fi
rm -f "$log"

"$repo/scripts/test-python.sh"

# A short soak on both placements: create→exec→upload→download→close
# cycles, then every leak class (instances, processes, SLURM jobs, staging
# dirs, handles, host fds and goroutines, plugin RSS). Any failure or leak
# fails the run.
soak_cycles=${GYM_SOAK_CYCLES:-50} soak_concurrency=${GYM_SOAK_CONCURRENCY:-8}
echo "[test] soak: $soak_cycles cycles at concurrency $soak_concurrency, local and SLURM" >&2
go run ./test/soak --placement both --cycles "$soak_cycles" --concurrency "$soak_concurrency" \
  --bin-dir "$GYM_BIN_DIR" --image "$GYM_TEST_IMAGES/busybox.sif"

# Daemon mode: the same cycles through a plugin daemon, whose RSS and fds
# are checked and which must exit on daemon stop.
echo "[test] soak through a plugin daemon, local and SLURM" >&2
go run ./test/soak --placement both --cycles 10 --concurrency 4 --daemon \
  --bin-dir "$GYM_BIN_DIR" --image "$GYM_TEST_IMAGES/busybox.sif"

# The starter fault (item 9 of the trust issue): kill the starters of some
# sandboxes before they are closed; close must still leave no FUSE helper.
echo "[test] soak with killed starters (local)" >&2
go run ./test/soak --placement local --cycles 8 --concurrency 4 --kill-starter 4 \
  --bin-dir "$GYM_BIN_DIR" --image "$GYM_TEST_IMAGES/busybox.sif"
