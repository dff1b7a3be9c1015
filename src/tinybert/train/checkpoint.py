"""Checkpoints written atomically: a Hugging Face model directory plus `trainer_state.pt`.

A checkpoint is built under a temporary name and renamed into place, so a crash mid-write never
leaves a half-written directory where `resume` would look.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

STATE_FILE = "trainer_state.pt"
_STEP_DIR = re.compile(r"^checkpoint-(\d+)$")


def write_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_dir)`, then move tmp_dir to `target`, replacing any old one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    if target.exists():
        os.replace(target, old)  # a crash between these two renames leaves `.old`, never nothing
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


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


def rotate(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints."""
    checkpoints = step_checkpoints(run_dir)
    for old in checkpoints[: max(0, len(checkpoints) - keep)]:
        shutil.rmtree(old, ignore_errors=True)


def save_state(directory: Path, state: dict) -> None:
    torch.save(state, Path(directory) / STATE_FILE)


def load_state(directory: Path) -> dict:
    # weights_only=False: the state holds RNG byte tensors and plain Python numbers we wrote ourselves.
    return torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=False)
