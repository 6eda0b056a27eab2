#!/usr/bin/env bash
# test-python.sh - installs the Python package (python/) into a fresh venv,
# offline (`pip install --no-index`, as a user without a package index
# would), checks that NeMo Gym's entry point is published, and runs the
# Python tests (stdlib unittest) against the installed package.
#
# The integration tests (the real gym-host serve and apptainer, and the
# NeMo Gym conformance test with 32 sandboxes in flight) run when
# GYM_BIN_DIR names the directory with gym-host; GYM_TEST_IMAGES the images.
# With CI=true a missing component fails them, and any skipped test fails
# the run. PYTHON picks the interpreter (default python3; >= 3.9).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}

tmp=$(mktemp -d -t gym-pytest.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# Debian splits venv's ensurepip into python3-venv; install it (from the
# archive apt already uses) where it is missing and we may.
if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[test-python] $py has no venv/ensurepip: installing python3-venv" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >&2
  else
    echo "[test-python] $py has no venv/ensurepip: install python3-venv (or set PYTHON to an interpreter that has it)" >&2
    exit 1
  fi
fi

echo "[test-python] $("$py" --version) venv + pip install --no-index ./python" >&2
"$py" -m venv "$tmp/venv"
(cd "$repo" && "$tmp/venv/bin/pip" install --no-index --quiet --disable-pip-version-check ./python)
"$tmp/venv/bin/python" - <<'PY'
import sys
from importlib.metadata import entry_points
import gym_apptainer
assert "site-packages" in gym_apptainer.__file__, gym_apptainer.__file__
eps = entry_points()
group = eps.select(group="nemo_gym.sandbox_providers") if hasattr(eps, "select") else eps.get("nemo_gym.sandbox_providers", [])
found = [ep for ep in group if ep.name == "gym_apptainer"]
assert found, "entry point gym_apptainer not published in nemo_gym.sandbox_providers"
assert found[0].load().__name__ == "GymApptainerProvider"
print("[test-python] installed", gym_apptainer.__version__, "entry point", found[0].value, file=sys.stderr)
PY

# The tests run from a copy, so that `gym_apptainer` is the installed one.
cp -r "$repo/python/tests" "$tmp/tests"
find "$tmp/tests" -name __pycache__ -prune -exec rm -rf {} +
log="$tmp/unittest.log"
rc=0
(cd "$tmp" && GYM_PY_SRC="$repo/python" "$tmp/venv/bin/python" -m unittest discover -v -s tests -t . >"$log" 2>&1) || rc=$?
grep -E '^Ran |^OK|^FAILED' "$log" | sed 's/^/[test-python] /' >&2
if [ "$rc" -ne 0 ]; then
  echo "[test-python] failed:" >&2
  tail -n 80 "$log" >&2
  exit "$rc"
fi
if [ "${CI:-}" = true ] && grep -qE ' \.\.\. skipped' "$log"; then
  echo "[test-python] CI: tests were skipped (a run that does not test everything is a failed run):" >&2
  grep -E ' \.\.\. skipped' "$log" >&2
  exit 1
fi
grep -E ' \.\.\. skipped' "$log" >&2 || true
