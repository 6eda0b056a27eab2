"""Local file ends of uploads and downloads (shared by both clients)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Optional, Union

from .errors import InvalidRequest

CHUNK = 256 * 1024


def open_source(path: Union[str, "os.PathLike[str]"]) -> BinaryIO:
    """Open a local file to upload; only regular files (a FIFO could block
    forever, a device never end)."""
    f = open(path, "rb")
    try:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise InvalidRequest(f"upload {os.fspath(path)}: not a regular file")
    except BaseException:
        f.close()
        raise
    return f


class AtomicWriter:
    """Writes a download beside its target and renames it into place when
    complete, so a failed download leaves no partial file. Missing parent
    directories are made (as NeMo Gym's provider does)."""

    def __init__(self, target: Union[str, "os.PathLike[str]"]) -> None:
        self.target = Path(target)
        self.size = 0
        self._f: Optional[BinaryIO] = None
        self._tmp = ""

    def __enter__(self) -> "AtomicWriter":
        parent = self.target.parent
        parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".part", dir=parent)
        self._f = os.fdopen(fd, "wb")
        return self

    def write(self, data: bytes) -> None:
        assert self._f is not None
        self._f.write(data)
        self.size += len(data)

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        assert self._f is not None
        self._f.close()
        if exc_type is None:
            # mkstemp made it 0600; a download gets a plain file's mode.
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.target)
        else:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
