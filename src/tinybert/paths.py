"""Where a command writes: checks made before it does any work, so a bad path ends in one clear
line and nothing is written or overwritten; and writing a file so no reader sees half of it."""

from __future__ import annotations

import os
from pathlib import Path

from tinybert.errors import UserError


def check_output_dir(path: Path, what: str) -> None:
    """An output folder (made if missing) must not be a file, nor lie under one."""
    for existing in (path, *path.parents):
        if not existing.exists():
            continue
        if not existing.is_dir():
            where = "" if existing == path else f" lies under {existing}, which"
            raise UserError(f"{what} {path}{where} is a file; give a folder")
        return


def check_output_file(path: Path, what: str, inputs: tuple[str, ...] = ()) -> None:
    """An output file must go into an existing folder, not be a folder, and not be an input."""
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise UserError(f"{what} {path}: folder {path.parent} does not exist; create it first")
    for given in inputs:
        if (
            given not in ("", "-")
            and Path(given).exists()
            and Path(given).resolve() == path.resolve()
        ):
            raise UserError(f"{what} {path} is the input file; write the output elsewhere")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to a temporary sibling, then rename it over `path`: a reader
    (or a crash) never sees half a file. The temporary name is per process, so two writers do
    not collide; it is removed if the write fails."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
