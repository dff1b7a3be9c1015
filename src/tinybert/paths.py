"""Where a command writes: checks made before it does any work, so a bad path ends in one clear
line and nothing is written or overwritten; and writing a file or a folder so no reader sees
half of it.

What the user owns is never overwritten: an output may not be a file the command reads nor lie
inside a folder it reads (a model directory), a new folder (init-model, convert-mindspore) may
not replace a non-empty one, and an output this user cannot write is refused before the work."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from tinybert.errors import UserError

Input = str | Path | None  # a path a command reads; None, "" and "-" (stdin) stand for none


def check_output_dir(path: Path, what: str) -> None:
    """An output folder (made if missing) must not be a file, nor lie under one, and the folder
    it is (or the nearest existing one it would be made in) must be writable by this user."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:  # nothing exists, not even the root of a relative path
        return
    if not existing.is_dir():
        where = "" if existing == path else f" lies under {existing}, which"
        raise UserError(f"{what} {path}{where} is a file; give a folder")
    _check_writable(existing, path, what)


def check_new_output_dir(path: Path, what: str) -> None:
    """check_output_dir, and the folder must be missing or empty: a new model directory never
    replaces (nor mixes its files with) one the user has."""
    check_output_dir(path, what)
    if path.is_dir() and any(path.iterdir()):
        raise UserError(f"{what} {path} exists and is not empty; choose a new folder or remove it")


def check_output_file(path: Path, what: str, inputs: Iterable[Input] = ()) -> None:
    """An output file must go into an existing folder this user can write, not be a folder nor
    a read-only file, and not be one of `inputs` nor lie inside one that is a folder (a model
    directory the command reads)."""
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; give a file name")
    parent = path.parent
    blocker = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"{what} {path} lies under {blocker}, which is a file; give a folder")
    if not parent.is_dir():
        raise UserError(f"{what} {path}: folder {parent} does not exist; create it first")
    _check_writable(parent, path, what)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{what} {path} is read-only; write the output elsewhere")
    check_not_input(path, what, inputs)


def check_not_input(path: Path, what: str, inputs: Iterable[Input]) -> None:
    """`path` (file or folder) must not be an input file, nor lie inside an input folder; the
    same file under another spelling, a symlink or a hard link counts as the input."""
    target = path.resolve()
    for given in inputs:
        if given is None or str(given) in ("", "-") or not Path(given).exists():
            continue
        source = Path(given)
        if source.is_dir():
            if target.is_relative_to(source.resolve()):
                raise UserError(
                    f"{what} {path} lies inside {given}, a folder this command reads; write "
                    "the output outside it"
                )
        elif target == source.resolve() or (path.exists() and os.path.samefile(path, source)):
            raise UserError(f"{what} {path} is the input file {given}; write the output elsewhere")


def _check_writable(folder: Path, path: Path, what: str) -> None:
    """`folder` (where `path` is or would be made) must take new entries from this user.
    os.access asks the kernel: permissions, ACLs and read-only mounts all count (root passes
    permission bits, not a read-only mount)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        where = "" if folder == path else f": folder {folder}"
        raise UserError(
            f"{what} {path}{where} is not writable (read-only, or another user's); choose a "
            "folder you can write to"
        )


def build_dir(out: Path, write: Callable[[Path], None], what: str) -> None:
    """Make the new folder `out` whole or not at all: check it (check_new_output_dir), call
    `write(tmp)` on a hidden sibling, then rename that into place. A failure (or Ctrl-C) removes
    the sibling and any parent folders made for it, so nothing is left behind."""
    check_new_output_dir(out, what)
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.partial"  # mkdir: the umask's permissions
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run of this same process id
    try:
        tmp.mkdir()
        write(tmp)
        with contextlib.suppress(FileNotFoundError):
            out.rmdir()  # empty (checked above); rename cannot replace a folder on every OS
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:  # deepest first; only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


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


def follow_umask(path: Path) -> None:
    """Give a file the permissions a plain open() would (0o666 less the umask, e.g. 0o644).
    Writers that build in a private temporary file (safetensors' save_file) leave 0o600, so a
    model saved for a team could not be read by it."""
    os.chmod(path, 0o666 & ~current_umask())


def current_umask() -> int:
    """The process's umask. Linux shows it in /proc; elsewhere it can only be read by setting
    it, briefly (os.umask returns the old value)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
