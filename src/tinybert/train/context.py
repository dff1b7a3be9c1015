"""What every stage of one command shares (`StageContext`), and making it from the config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tinybert.config import Config, dump_yaml
from tinybert.errors import UserError
from tinybert.model import save_any_model
from tinybert.train import checkpoint as ckpt
from tinybert.train import distributed
from tinybert.train.distributed import Dist

__all__ = ["StageContext", "stage_context"]


@dataclass(frozen=True)
class StageContext:
    """What every stage of one command shares: where it writes, on what, and how it resumes.

    A stage writes to `root / stage` (e.g. runs/sst2/student/intermediate). `save_model(model,
    dir)` writes a Hugging Face directory (config, weights, tokenizer).
    """

    root: Path
    device: torch.device
    save_model: Callable[[nn.Module, Path], None]
    dist: Dist = field(default_factory=Dist)
    seed: int = 42
    # None, "auto", or a path: a checkpoint (or the folder) of one stage, which resumes from it;
    # the command's other stages then behave as with "auto"
    resume: str | None = None
    # written as <stage>/config.yaml when a stage starts or resumes training (never when it is
    # skipped as finished, nor when its resume is refused)
    config_text: str | None = None

    def resume_for(self, stage_dir: Path) -> str | None:
        """What `resume` means for the stage writing to `stage_dir`: None, "auto", or the
        checkpoint path when the path lies in that stage's folder ("auto" for other stages)."""
        if self.resume is None or self.resume == "auto":
            return self.resume
        path, folder = Path(self.resume).resolve(), Path(stage_dir).resolve()
        if path == folder:
            return "auto"
        return self.resume if folder in path.parents else "auto"

    def preflight(self, stages: Sequence[str], neighbours: Sequence[str] = ()) -> None:
        """Checks before a command does any work: `resume=<path>` names a checkpoint of one of
        its `stages` (folders under `root`), no other process holds a stage folder or one of
        `neighbours` (stages of the same command this run skips, e.g. task-distill's phase 1
        with distill.phases=[prediction]), and a fresh run (no resume) does not write into a
        folder holding another run."""
        folders = [Path(self.root) / s for s in stages]
        if self.resume not in (None, "auto"):
            path = Path(self.resume)
            owner = [f for f in folders if f.resolve() in (path.resolve(), *path.resolve().parents)]
            if not owner:
                raise UserError(
                    f"resume={self.resume} is not in a stage folder of this command "
                    f"({', '.join(str(f) for f in folders)}); give a checkpoint inside one of "
                    "them (e.g. .../checkpoint-N), or resume=auto"
                )
            if path.resolve() != owner[0].resolve() and not (path / ckpt.STATE_FILE).is_file():
                found = [p.name for p in ckpt.step_checkpoints(owner[0])]
                if (owner[0] / "final" / ckpt.STATE_FILE).is_file():
                    found.append("final")
                raise UserError(
                    f"resume={self.resume} is not a checkpoint (no {ckpt.STATE_FILE} in it); "
                    f"{owner[0]} holds: {', '.join(found) or 'no checkpoints'}"
                )
        error = None
        if self.dist.is_main:
            try:
                for folder in [*folders, *(Path(self.root) / s for s in neighbours)]:
                    ckpt.check_free(folder)
                for folder in folders if self.resume is None else []:
                    ckpt.check_unused(folder)
            except UserError as exc:
                error = str(exc)
        for message in self.dist.gather(error):
            if message:
                raise UserError(message)


def stage_context(cfg: Config, tokenizer_dir: str) -> StageContext:
    """Join torchrun's group if launched by it, pick the device; saved models get the
    tokenizer of `tokenizer_dir`."""
    dist, device = distributed.setup(cfg.device)
    return StageContext(
        root=Path(cfg.output_dir),
        device=device,
        save_model=lambda m, d: save_any_model(m, d, tokenizer_dir=tokenizer_dir),
        dist=dist,
        seed=cfg.seed,
        resume=cfg.resume,
        config_text=dump_yaml(cfg),
    )
