"""Checkpoints and the stage folder they live in.

A checkpoint is a Hugging Face model directory plus `trainer_state.pt` (tensors and JSON, read
with torch.load(weights_only=True): see `save_state`). It is built under a temporary name
(`X.tmp`) and renamed into place; one it replaces is first renamed to `X.old`, and one rotation
deletes is first renamed to `X.deleting`, so a kill at any moment never leaves a half-written
or half-deleted directory under a name `resume` reads. `clean_leftovers` (run at
the start of a stage, under its lock) removes what such a kill leaves and puts back an `X.old`
whose `X` is missing.

`stage_lock` gives one process at a time a stage folder (`fcntl.flock` on `<stage>/.lock`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from tinybert.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): no locking
    fcntl = None  # type: ignore[assignment]

STATE_FILE = "trainer_state.pt"
LOCK_FILE = ".lock"
_STEP_DIR = re.compile(r"^checkpoint-(\d+)$")


def write_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_dir)`, then move tmp_dir to `target`, replacing any old one.

    `target` is always whole or absent, and an absent one is whole under `<target>.old`: a kill
    between the two renames leaves it there, and the next write (or `clean_leftovers`) puts it
    back. Deletions go through `remove`, so nothing is ever half-deleted under these names."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    if old.is_dir() and not target.exists():
        os.replace(old, target)
    for leftover in (tmp, old):
        remove(leftover)
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        remove(tmp)
        raise
    if target.exists():
        os.replace(target, old)  # a crash between these two renames leaves `.old`, never nothing
    os.replace(tmp, target)
    remove(old)


def step_checkpoints(run_dir: Path) -> list[Path]:
    """The complete `checkpoint-N` directories in `run_dir`, oldest first."""
    if not Path(run_dir).is_dir():
        return []
    found = []
    for child in Path(run_dir).iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def step_of(checkpoint: Path) -> int:
    """N of `checkpoint-N`."""
    match = _STEP_DIR.match(Path(checkpoint).name)
    if match is None:
        raise ValueError(f"{checkpoint} is not named checkpoint-N")
    return int(match.group(1))


def remove(directory: Path) -> None:
    """Delete a directory so that a kill midway leaves no part of it under its own name: it is
    renamed to `<name>.deleting` first (which `clean_leftovers` removes)."""
    directory = Path(directory)
    doomed = directory.with_name(directory.name + ".deleting")
    shutil.rmtree(doomed, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.replace(directory, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def rotate(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints."""
    checkpoints = step_checkpoints(run_dir)
    for old in checkpoints[: max(0, len(checkpoints) - keep)]:
        remove(old)


def clean_leftovers(run_dir: Path) -> list[str]:
    """Remove what a killed write, rotation or resume left in a stage folder: `*.tmp` and
    `*.deleting` entries, `checkpoint-N` directories without their state file, and an `X.old`
    whose `X` exists; an `X.old` whose `X` is missing is renamed back to `X` (the kill fell
    between write_atomic's two renames). Returns the names it removed or restored."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    done = []
    for child in sorted(run_dir.iterdir()):
        name = child.name
        if name.endswith((".tmp", ".deleting")):
            _delete(child)
        elif name.endswith(".old") and child.is_dir():
            target = child.with_name(name[: -len(".old")])
            if target.exists():
                shutil.rmtree(child, ignore_errors=True)
            else:
                os.replace(child, target)
        elif _STEP_DIR.match(name) and child.is_dir() and not (child / STATE_FILE).is_file():
            shutil.rmtree(child, ignore_errors=True)
        else:
            continue
        done.append(name)
    return done


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# One process at a time in a stage folder.


def _in_use(directory: Path, fd: int) -> UserError:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        holder = {}
    who = (
        f"process {holder.get('pid', '?')} (host {holder.get('host', '?')}) since "
        f"{holder.get('since', '?')}"
        if holder
        else "another process"
    )
    return UserError(f"{directory} is in use by {who}; wait for it or use another output_dir")


def _try_lock(fd: int) -> bool:
    """Take the lock without waiting; False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        # held elsewhere; any other error is a file system without locks: go on unlocked
        return exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    return True


@contextlib.contextmanager
def stage_lock(directory: Path) -> Iterator[None]:
    """Hold `<directory>/.lock` exclusively (flock, not waiting) while the block runs; the file
    then names this process (pid, host, start time). Held elsewhere: a UserError naming the
    holder. Released on leaving the block, errors included (and by the OS if the process dies).
    Not reentrant: a second `stage_lock` of the same folder fails, in this process too."""
    directory = Path(directory)
    if fcntl is None:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    if not _try_lock(fd):
        error = _in_use(directory, fd)
        os.close(fd)
        raise error
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def check_free(directory: Path) -> None:
    """Raise the UserError `stage_lock` would, when another process holds the folder now (an
    early check before a command loads its data; the lock itself is taken by the stage)."""
    path = Path(directory) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if not _try_lock(fd):
            raise _in_use(Path(directory), fd)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_unused(directory: Path) -> None:
    """A fresh run (no `resume`) must not write into a stage folder holding another run: its
    metrics.jsonl would mix both runs and its checkpoints would mix with the old ones."""
    folder = Path(directory)
    held = [p.name for p in step_checkpoints(folder)]
    held += [n for n in ("final", "best") if (folder / n).is_dir()]
    if held:
        raise UserError(
            f"{folder} already holds a run ({', '.join(held)}); continue it with resume=auto, "
            "or start afresh in another output_dir (or delete the folder)"
        )


# ---------------------------------------------------------------------------------------------
# trainer_state.pt: tensors and JSON, loaded with torch.load(weights_only=True)

STATE_FORMAT = "tinybert-trainer-state"
STATE_VERSION = 1
# The JSON encoding of what JSON has no form for: {"$tensor": "3"} is tensor "3" of the file,
# {"$tuple": [...]} a tuple, {"$items": [[key, value], ...]} a dict with a non-string key (the
# optimizer's state is keyed by parameter number) or a key starting with "$".
_TENSOR, _TUPLE, _ITEMS = "$tensor", "$tuple", "$items"


def save_state(directory: Path, state: dict) -> None:
    """Write `state` (dicts, lists and tuples of tensors, str, int, float, bool and None) to
    `<directory>/trainer_state.pt`: the tensors by number, and the rest as JSON text naming
    them. Nothing in it needs a pickled Python object, so `load_state` reads it with
    torch.load(weights_only=True) and a shared run folder cannot run code on resume."""
    tensors: dict[str, torch.Tensor] = {}
    text = json.dumps(_encode(state, tensors, {}))  # NaN/Infinity are kept (json reads them back)
    payload = {"format": STATE_FORMAT, "version": STATE_VERSION, "state": text, "tensors": tensors}
    torch.save(payload, Path(directory) / STATE_FILE)


def load_state(directory: Path) -> dict:
    """The state `save_state` wrote. A file that holds anything else (a pickled object, another
    layout, a newer version) is refused with one line and nothing in it is run; a truncated or
    unreadable one raises what torch.load raises (the caller reports it)."""
    path = Path(directory) / STATE_FILE
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only met something other than tensors and plain data
        raise _not_a_state(path, "it holds pickled Python objects") from None
    if not isinstance(raw, dict) or raw.get("format") != STATE_FORMAT:
        raise _not_a_state(path, "its layout is not tinybert's")
    if raw.get("version") != STATE_VERSION:
        raise _not_a_state(path, f"format version {raw.get('version')!r}, not {STATE_VERSION}")
    tensors, text = raw.get("tensors"), raw.get("state")
    if not isinstance(tensors, dict) or not isinstance(text, str):
        raise _not_a_state(path, "its layout is not tinybert's")
    try:
        state = _decode(json.loads(text), tensors)
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        reason = " ".join(str(exc).split())
        raise _not_a_state(path, f"its state does not decode: {reason}") from None
    if not isinstance(state, dict):
        raise _not_a_state(path, "its layout is not tinybert's")
    return state


def _not_a_state(path: Path, reason: str) -> UserError:
    return UserError(
        f"{path} is not a tinybert training state ({reason}; it was written by another program "
        "or another tinybert version, or altered, and may be unsafe, so nothing in it was loaded); "
        "name another checkpoint with resume=<path>, or start afresh in a new output_dir"
    )


def _encode(value: Any, tensors: dict[str, torch.Tensor], seen: dict[int, str]) -> Any:
    """`value` as JSON-ready data, its tensors moved into `tensors` (one entry per tensor
    object, so tensors shared within the state stay shared when read back)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, torch.Tensor):
        if id(value) not in seen:
            seen[id(value)] = name = str(len(tensors))
            tensors[name] = value
        return {_TENSOR: seen[id(value)]}
    if isinstance(value, (list, tuple)):
        items = [_encode(v, tensors, seen) for v in value]
        return items if isinstance(value, list) else {_TUPLE: items}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, tensors, seen) for k, v in value.items()}
        return {
            _ITEMS: [
                [_encode(k, tensors, seen), _encode(v, tensors, seen)] for k, v in value.items()
            ]
        }
    raise TypeError(f"trainer state cannot hold a {type(value).__name__} ({value!r:.60})")


def _decode(value: Any, tensors: dict[str, Any]) -> Any:
    """The inverse of `_encode`; KeyError/TypeError/ValueError on data it did not write."""
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and _TENSOR in value:
        tensor = tensors[value[_TENSOR]]
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"entry {value[_TENSOR]!r} is a {type(tensor).__name__}, not a tensor")
        return tensor
    if len(value) == 1 and _TUPLE in value:
        return tuple(_decode(v, tensors) for v in value[_TUPLE])
    if len(value) == 1 and _ITEMS in value:
        return {_key(_decode(k, tensors)): _decode(v, tensors) for k, v in value[_ITEMS]}
    return {k: _decode(v, tensors) for k, v in value.items()}


def _key(key: Any) -> Any:
    if isinstance(key, (list, dict)):
        raise TypeError(f"a {type(key).__name__} cannot be a key")
    return key
