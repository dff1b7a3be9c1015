"""Sound weights: a diverged run never writes best/ or a checkpoint.

A loss can stay finite while the weights run away (lr=1e3 left weights near 5e4 with a finite
loss), so the weights themselves are checked before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tinybert.train import checkpoint as ckpt

# No trained BERT weight comes near this (they stay well under 100): a larger one means the
# run diverged, even while its loss is still finite.
WEIGHT_LIMIT = 1e4


def unsound_weight(modules: list[nn.Module]) -> tuple[str, float] | None:
    """(name, largest |value|) of the first parameter holding nan/inf or a value above
    WEIGHT_LIMIT, or None when every weight is sound."""
    named = [(n, p) for m in modules for n, p in m.named_parameters() if p.numel()]
    if not named:
        return None
    peaks = torch.stack([p.detach().abs().max().float() for _, p in named]).cpu()
    for (name, _), value in zip(named, peaks.tolist(), strict=True):
        if not value <= WEIGHT_LIMIT:  # nan fails every comparison
            return name, value
    return None


def last_sound_checkpoint(out_dir: Path, step: int) -> Path | None:
    """The newest step checkpoint at or before `step` whose weights are all sound."""
    for path in reversed(ckpt.step_checkpoints(out_dir)):
        if ckpt.step_of(path) > step:
            continue
        try:
            tensors = ckpt.load_state(path)["model"].values()
        except Exception:  # unreadable: not one to recommend
            continue
        floats = [t for t in tensors if t.is_floating_point() and t.numel()]
        if all(bool(t.abs().max() <= WEIGHT_LIMIT) for t in floats):
            return path
    return None
