"""In-tree PEP 517 (and PEP 660) build backend for gym_apptainer.

It writes the wheel with ``zipfile`` and the sdist with ``tarfile``, so that
``pip install --no-index ./python`` works in a fresh venv, which has no
``wheel`` package and no index to fetch one from. Metadata comes from
pyproject.toml's ``[project]`` table (read with ``tomllib`` where Python has
it, else with the small reader below, which knows the subset that file uses).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "gym_apptainer"
# Files of the package that go into the wheel.
PACKAGE_SUFFIXES = (".py", ".typed")
# Top-level entries of the sdist besides the package.
SDIST_EXTRA = ("pyproject.toml", "README.md", "_build", "tests", "examples", "bench")
# Fixed timestamp so that two builds of one tree give the same wheel bytes.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


# --- pyproject.toml -------------------------------------------------------


def _split_key(text: str) -> List[str]:
    """Split a dotted TOML key, honouring double-quoted parts."""
    parts: List[str] = []
    for m in re.finditer(r'\s*(?:"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_-]+))\s*(?:\.|$)', text):
        parts.append(m.group(1) if m.group(1) is not None else m.group(2))
    return parts


def _value(text: str) -> Any:
    text = text.strip()
    if text.startswith('"'):
        return _unquote(text)
    if text.startswith("["):
        return [_unquote(s) for s in re.findall(r'"(?:[^"\\]|\\.)*"', text)]
    if text in ("true", "false"):
        return text == "true"
    return int(text)


def _unquote(text: str) -> str:
    m = re.match(r'"((?:[^"\\]|\\.)*)"', text.strip())
    if not m:
        raise ValueError(f"pyproject.toml: cannot read value {text!r}")
    return m.group(1).encode().decode("unicode_escape")


def _mini_toml(source: str) -> Dict[str, Any]:
    """Read the TOML subset of pyproject.toml: tables, strings, string lists."""
    doc: Dict[str, Any] = {}
    table = doc
    pending = ""
    for raw in source.splitlines():
        line = raw.split("#", 1)[0].rstrip() if '"' not in raw else raw.rstrip()
        if pending:
            pending += " " + line.strip()
            if "]" in line:
                key, _, val = pending.partition("=")
                table[_split_key(key)[0]] = _value(val)
                pending = ""
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            table = doc
            for part in _split_key(stripped.strip("[]")):
                table = table.setdefault(part, {})
            continue
        key, _, val = stripped.partition("=")
        if val.strip().startswith("[") and "]" not in val:
            pending = stripped
            continue
        table[_split_key(key)[0]] = _value(val)
    return doc


def read_pyproject(root: Path = ROOT) -> Dict[str, Any]:
    """pyproject.toml as a dict."""
    data = (root / "pyproject.toml").read_bytes()
    try:
        import tomllib  # Python >= 3.11
    except ImportError:
        return _mini_toml(data.decode("utf-8"))
    return tomllib.loads(data.decode("utf-8"))


def _project() -> Dict[str, Any]:
    return read_pyproject()["project"]


def _dist_name(project: Dict[str, Any]) -> str:
    return re.sub(r"[-_.]+", "_", project["name"]).lower()


# --- metadata -------------------------------------------------------------


def metadata_text(project: Dict[str, Any]) -> str:
    """The METADATA (and PKG-INFO) file, core metadata 2.1."""
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project.get('description', '')}",
        f"Requires-Python: {project.get('requires-python', '>=3.9')}",
    ]
    if project.get("license"):
        lines.append(f"License: {project['license']}")
    for c in project.get("classifiers", []):
        lines.append(f"Classifier: {c}")
    readme = ROOT / project.get("readme", "README.md")
    body = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + body


def entry_points_text(project: Dict[str, Any]) -> str:
    """entry_points.txt: one INI section per group."""
    out = []
    for group, eps in project.get("entry-points", {}).items():
        out.append(f"[{group}]")
        out.extend(f"{name} = {target}" for name, target in eps.items())
        out.append("")
    scripts = project.get("scripts", {})
    if scripts:
        out.append("[console_scripts]")
        out.extend(f"{name} = {target}" for name, target in scripts.items())
        out.append("")
    return "\n".join(out)


WHEEL_TEXT = "Wheel-Version: 1.0\nGenerator: gym_apptainer_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _dist_info_files(project: Dict[str, Any]) -> List[Tuple[str, bytes]]:
    return [
        ("METADATA", metadata_text(project).encode()),
        ("WHEEL", WHEEL_TEXT.encode()),
        ("entry_points.txt", entry_points_text(project).encode()),
        ("top_level.txt", f"{PACKAGE}\n".encode()),
    ]


# --- wheel ----------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def _package_files() -> List[Tuple[str, bytes]]:
    files = []
    for path in sorted((ROOT / PACKAGE).rglob("*")):
        if path.is_file() and path.suffix in PACKAGE_SUFFIXES and "__pycache__" not in path.parts:
            files.append((path.relative_to(ROOT).as_posix(), path.read_bytes()))
    return files


def _write_wheel(wheel_directory: str, payload: List[Tuple[str, bytes]]) -> str:
    project = _project()
    dist = _dist_name(project)
    version = project["version"]
    info = f"{dist}-{version}.dist-info"
    name = f"{dist}-{version}-py3-none-any.whl"
    entries = list(payload) + [(f"{info}/{n}", d) for n, d in _dist_info_files(project)]
    record_lines = [f"{n},{_record_hash(d)},{len(d)}" for n, d in entries]
    record_lines.append(f"{info}/RECORD,,")
    entries.append((f"{info}/RECORD", ("\n".join(record_lines) + "\n").encode()))
    path = Path(wheel_directory) / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n, d in entries:
            zi = zipfile.ZipInfo(n, date_time=ZIP_DATE)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, d)
    return name


def get_requires_for_build_wheel(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def get_requires_for_build_editable(config_settings: Optional[Dict[str, Any]] = None) -> List[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    project = _project()
    info = f"{_dist_name(project)}-{project['version']}.dist-info"
    target = Path(metadata_directory) / info
    target.mkdir(parents=True, exist_ok=True)
    for n, d in _dist_info_files(project):
        (target / n).write_bytes(d)
    return info


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(
    wheel_directory: str,
    config_settings: Optional[Dict[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    return _write_wheel(wheel_directory, _package_files())


def build_editable(
    wheel_directory: str,
    config_settings: Optional[Dict[str, Any]] = None,
    metadata_directory: Optional[str] = None,
) -> str:
    """An editable wheel: a .pth file that puts this tree on sys.path."""
    pth = f"{os.fspath(ROOT)}\n".encode()
    return _write_wheel(wheel_directory, [(f"__editable__.{PACKAGE}.pth", pth)])


# --- sdist ----------------------------------------------------------------


def build_sdist(sdist_directory: str, config_settings: Optional[Dict[str, Any]] = None) -> str:
    project = _project()
    base = f"{_dist_name(project)}-{project['version']}"
    name = f"{base}.tar.gz"
    paths = [ROOT / PACKAGE] + [ROOT / p for p in SDIST_EXTRA]
    with tarfile.open(Path(sdist_directory) / name, "w:gz", format=tarfile.PAX_FORMAT) as tf:
        pkg_info = metadata_text(project).encode()
        ti = tarfile.TarInfo(f"{base}/PKG-INFO")
        ti.size, ti.mtime, ti.mode = len(pkg_info), int(time.time()), 0o644
        tf.addfile(ti, io.BytesIO(pkg_info))
        for top in paths:
            if not top.exists():
                continue
            files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
            for path in files:
                if "__pycache__" in path.parts:
                    continue
                tf.add(path, arcname=f"{base}/{path.relative_to(ROOT).as_posix()}", recursive=False)
    return name
