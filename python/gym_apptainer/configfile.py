"""A gym-host config file from NeMo Gym's provider options.

NeMo Gym hands its provider block (``apptainer: {exec, create, probe,
bin_path}``) to the provider's constructor as keyword arguments. gym-host
reads the same keys under ``sandbox.apptainer`` (plus ``gym:`` for its own
settings), so the options are written as a config file (JSON, which is
YAML) that gym-host is pointed at.

The file is named by a hash of its content, in a private 0700 directory, and
written 0600: every process with the same options uses the same path, so
they share one service daemon (daemon mode keys daemons on config path and
content) and the same sandboxes.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from .errors import InvalidRequest

# gym: keys that are paths; gym-host reads a relative one against the config
# file's directory, which here is a private one, so they are made absolute
# against the caller's working directory (where the user meant them).
GYM_PATH_KEYS = ("state_dir", "cache_dir", "apptainer_conf")
GYM_SLURM_PATH_KEYS = ("partitions_file", "node_plugin")
NEMO_SECTIONS = ("exec", "create", "probe")


def _plain(value: Any, where: str) -> Any:
    """A JSON-able copy (NeMo Gym may pass its config dataclasses)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is not None:
        return {k: _plain(getattr(value, k), f"{where}.{k}") for k in fields}
    raise InvalidRequest(f"{where}: cannot use a {type(value).__name__} in a gym-host config")


def _absolute(path: Any) -> Any:
    if isinstance(path, str) and path and not path.startswith(("/", "~")):
        return os.path.abspath(path)
    return path


def build_config(
    *,
    exec: Any = None,
    create: Any = None,
    probe: Any = None,
    bin_path: Optional[str] = None,
    gym: Optional[Mapping[str, Any]] = None,
    default_metadata: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The config document for these options (only the keys given)."""
    apptainer: Dict[str, Any] = {}
    for name, section in (("exec", exec), ("create", create), ("probe", probe)):
        if section is not None:
            plain = _plain(section, f"sandbox.apptainer.{name}")
            if not isinstance(plain, dict):
                raise InvalidRequest(f"sandbox.apptainer.{name} must be a mapping, got {type(section).__name__}")
            apptainer[name] = plain
    if bin_path is not None:
        apptainer["bin_path"] = _absolute(str(bin_path))
    sandbox: Dict[str, Any] = {}
    if apptainer:
        sandbox["apptainer"] = apptainer
    if default_metadata:
        sandbox["default_metadata"] = _plain(dict(default_metadata), "sandbox.default_metadata")
    doc: Dict[str, Any] = {}
    if sandbox:
        doc["sandbox"] = sandbox
    if gym:
        g = _plain(dict(gym), "gym")
        for k in GYM_PATH_KEYS:
            if k in g:
                g[k] = _absolute(g[k])
        slurm = g.get("slurm")
        if isinstance(slurm, dict):
            for k in GYM_SLURM_PATH_KEYS:
                if k in slurm:
                    slurm[k] = _absolute(slurm[k])
        doc["gym"] = g
    return doc


def private_dir() -> Path:
    """A 0700 directory of this user for generated configs:
    $XDG_RUNTIME_DIR/gym-apptainer-py, else ~/.local/state/gym-apptainer/py."""
    rt = os.environ.get("XDG_RUNTIME_DIR")
    if rt and os.path.isabs(rt) and os.path.isdir(rt):
        d = Path(rt) / "gym-apptainer-py"
    else:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        d = Path(base) / "gym-apptainer" / "py"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise InvalidRequest(f"{d}: not a directory of this user; refusing to write a config there")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(d, 0o700)
    return d


def write_config(doc: Mapping[str, Any], directory: Optional[Path] = None) -> Path:
    """Write ``doc`` as ``config-<hash>.json`` (0600) and return its path;
    an existing file of that name already holds the same bytes."""
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    d = directory or private_dir()
    path = d / f"config-{hashlib.sha256(data).hexdigest()[:16]}.json"
    try:
        if path.read_bytes() == data:
            return path
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=d)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
