"""Files written whole or not at all: a temporary file beside the target, then os.replace, with the mode a plain
open() would give (what every result, frame and label file of the project is written with)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def process_umask() -> int:
    """The process umask, read without changing it (Linux /proc; elsewhere a set-and-restore)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_temp_file(path, suffix: str = ".tmp") -> tuple[int, str]:
    """(fd, name) of a temporary file next to `path`, with the mode a plain open() would give it.

    mkstemp creates 0600 files whatever the umask; os.replace keeps that mode, so without the chmod every result
    would be unreadable to anyone else on the machine.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.fchmod(fd, 0o666 & ~process_umask())
    return fd, tmp


def write_json(path, result) -> None:
    """A result as indented JSON, atomically (atomic_write_bytes): what every measurement's --json writes."""
    import json

    atomic_write_bytes(path, (json.dumps(result, indent=1) + "\n").encode())


def atomic_write_bytes(path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then os.replace: readers never see a partial file.

    The file gets the mode a plain open() would (0644 under the usual umask 022)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = atomic_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
