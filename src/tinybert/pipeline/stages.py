"""The stages of `tinybert run`: planned from the registry, checked together, finished or not.

Each stage is a command of the registry (commands.py) with a `RunStage`: its planner (wiring.py)
says where it reads and writes, and its wiring as config overrides (teacher=...,
student.path=...), so the command that reproduces a stage alone is the run's own command line
plus those overrides. This module plans the stages `run.stages` lists and refuses a run that
cannot work before any work.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tinybert.config import Config, load_config
from tinybert.errors import UserError
from tinybert.pipeline.wiring import CommandLine, RunStage, Stage, Wiring

__all__ = [
    "CommandLine",
    "Stage",
    "Wiring",
    "finished_marks",
    "mtimes",
    "plan",
    "stage_config",
    "up_to_date",
]


def plan(
    cfg: Config,
    configs: Sequence[str],
    overrides: Sequence[str],
    table: Mapping[str, RunStage],
) -> list[Stage]:
    """The stages `run.stages` lists, wired; refuses a run that cannot work before any work.
    table: each stage's `RunStage` by name, in run order (the registry's `stage_table()`)."""
    unknown = [name for name in cfg.run.stages if name not in table]
    if unknown:  # a config built before the registry was imported (the CLI checks on reading)
        raise UserError(f"run.stages: no stage {unknown[0]!r}; the stages: {', '.join(table)}")
    w = Wiring.of(cfg)
    _check(cfg, w)
    line = CommandLine(tuple(configs), tuple(overrides))
    return [table[name].plan(cfg, w, line) for name in cfg.run.stages]


def stage_config(configs: Sequence[str], overrides: Sequence[str], stage: Stage) -> Config:
    """The configuration one stage runs with: the run's, plus its wiring."""
    return load_config(configs, [*overrides, *stage.overrides])


def finished_marks(spec: RunStage, cfg: Config, w: Wiring) -> list[Path]:
    """Training stages: the state files of the final/ folders that mark them finished."""
    return spec.finished(cfg, w) if spec.finished else []


def _check(cfg: Config, w: Wiring) -> None:
    stages = cfg.run.stages
    key = "run.stages"
    if "prepare-corpus" in stages and not cfg.corpus.inputs:
        raise UserError(f"{key} has prepare-corpus: give corpus.inputs=[raw text files or globs]")
    if {"prepare-corpus", "general-distill"} & set(stages) and not w.gd_teacher:
        raise UserError(
            f"{key} has general distillation: give model= (or run.general_teacher=) the "
            "pre-trained BERT directory that teaches it"
        )
    if "general-distill" in stages and "prepare-corpus" not in stages and not cfg.corpus.path:
        raise UserError(
            f"{key} has general-distill without prepare-corpus: give corpus.path=<a folder made "
            "by tinybert prepare-corpus>, or add prepare-corpus with corpus.inputs"
        )
    # With general-distill, student.init is GD's start (auto, select or random): TD starts
    # from GD's student, so a start only TD could use is a conflict.
    gd_starts = ("auto", "select", "random")
    if {"general-distill", "task-distill"} <= set(stages) and cfg.student.init not in gd_starts:
        raise UserError(
            f"{key} has general-distill, whose student task-distill starts from; "
            f"student.init={cfg.student.init} asks for another start: remove one of them"
        )
    if "finetune" in stages and not cfg.model:
        raise UserError(f"{key} has finetune: give model=<Hugging Face BERT directory>")
    needs_teacher = {"augment", "task-distill", "evaluate", "export", "benchmark"} & set(stages)
    if needs_teacher and not w.teacher:
        raise UserError(
            f"{key} has {sorted(needs_teacher)[0]} without finetune: give teacher=<a fine-tuned "
            "BERT directory>, or add finetune with model=<BERT directory>"
        )
    deploys = {"evaluate", "export", "benchmark"} & set(stages)
    if "task-distill" in stages and deploys and "prediction" not in cfg.distill.phases:
        raise UserError(
            f"{key} has {sorted(deploys)[0]}, which needs the student of TD phase 2, but "
            f"distill.phases={list(cfg.distill.phases)}: add prediction"
        )
    if "augment" in stages and not w.augmented:
        raise UserError(f"{key} has augment: give task.data_dir (the task's files)")


def mtimes(paths: Sequence[Path]) -> list[int | None]:
    return [p.stat().st_mtime_ns if p.is_file() else None for p in paths]


def up_to_date(stage: Stage, spec: RunStage, previous: dict[str, Any] | None) -> bool:
    """A non-training stage need not run again: it finished before with the same settings, and
    each output exists and is newer than the model it was made from."""
    if spec.trains or not spec.may_skip or not stage.outputs or previous is None:
        return False
    if previous.get("status") not in ("done", "skipped"):
        return False
    if json.dumps(previous.get("settings"), sort_keys=True) != json.dumps(
        stage.settings, sort_keys=True
    ):
        changed = sorted(
            k
            for k in set(stage.settings) | set(previous.get("settings") or {})
            if (previous.get("settings") or {}).get(k) != stage.settings.get(k)
        )
        tqdm.write(f"{stage.name}: settings changed since it last ran ({', '.join(changed)})")
        return False
    for output, source in stage.outputs.items():
        out = Path(output)
        if not out.is_file():
            return False
        if source and Path(source).is_file() and Path(source).stat().st_mtime > out.stat().st_mtime:
            return False
    return True
