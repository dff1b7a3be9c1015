"""Checks on where a command will write, made before it does any work, so a bad path ends in
one clear line and nothing is written or overwritten."""

from __future__ import annotations

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
