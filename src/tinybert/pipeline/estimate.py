"""How long the rest of a run will take: a rough cost per stage, calibrated on the stages timed.

Each stage's cost is counted in multiply-adds of the matrix products that dominate it (6 x
parameters x tokens for a trained model, 2 x for a forward pass, the usual estimate), from the
config and the files already there (row counts, model shapes). Once a stage that did real work
has been timed, seconds per unit of cost gives the time left. The counts are coarse (padding,
data loading and ONNX export overheads differ by stage), so the banner says "about".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tinybert.config import RunConfig, StudentConfig, TrainConfig
from tinybert.data.base import split_source
from tinybert.data.task_data import task_spec, train_path
from tinybert.pipeline.stages import Stage, Wiring

# tokens per row of a task, as a fraction of max_seq_length: rows are padded per batch only
TASK_FILL = 0.4


@dataclass(frozen=True)
class _Sizes:
    """What every stage's cost is computed from, read once per run."""

    teacher: int  # matrix-product parameters of the teacher
    student: int
    tokens: float  # tokens per task row
    rows: int  # training rows (times the copies augment adds)
    dev: int  # dev rows

    @classmethod
    def of(cls, cfg: RunConfig, w: Wiring) -> _Sizes:
        return cls(
            teacher=_matmul_params(w.teacher) or _matmul_params(w.base) or 0,
            student=_student_params(cfg.student),
            tokens=cfg.task.max_seq_length * TASK_FILL,
            rows=_train_rows(cfg, augmented="augment" in cfg.run.stages),
            dev=_dev_rows(cfg),
        )


def stage_costs(stages: list[Stage], cfg: RunConfig, w: Wiring) -> dict[str, float | None]:
    """Each stage's estimated cost by name; None where it cannot be said (prepare-corpus reads
    text, a different kind of work; report runs no model)."""
    sizes = _Sizes.of(cfg, w)
    return {stage.name: _cost(stage.name, cfg, w, sizes) for stage in stages}


def _cost(name: str, cfg: RunConfig, w: Wiring, z: _Sizes) -> float | None:
    if name == "finetune":
        return _rows_seen(cfg.finetune, z.rows) * z.tokens * 6 * z.teacher
    if name == "general-distill":
        sequences = cfg.corpus.max_sequences or _corpus_rows(w.corpus) or 0
        length = cfg.corpus.max_seq_length
        return _rows_seen(cfg.general, sequences) * length * (6 * z.student + 2 * z.teacher)
    if name == "task-distill":
        phase1 = _rows_seen(cfg.intermediate, z.rows) * (6 * z.student + 2 * z.teacher)
        phase2 = _rows_seen(cfg.prediction, z.rows) * 6 * z.student + z.rows * 2 * z.teacher
        phases = cfg.distill.phases
        return z.tokens * (phase1 * ("intermediate" in phases) + phase2 * ("prediction" in phases))
    if name == "augment":  # one masked-LM forward pass per word of every original row
        originals = z.rows / (cfg.augment.n + 1)
        return originals * z.tokens * z.tokens * 2 * (_matmul_params(cfg.augment.mlm) or 0)
    forward = z.dev * z.tokens * 2 * (z.teacher + z.student)
    if name == "evaluate":
        return forward
    if name == "export":  # PyTorch and three ONNX files on the dev set
        return 4 * forward
    if name == "benchmark":  # three backends at each batch size, warm-up and repeats included
        b = cfg.benchmark
        share = min(z.dev, b.max_sentences) / max(z.dev, 1)
        return share * forward * 3 * len(b.batch_sizes) * (b.repeats + 1)
    return None


def _rows_seen(train: TrainConfig, rows: int) -> float:
    if train.max_steps:
        return train.max_steps * train.batch_size * train.grad_accum
    return train.epochs * rows


def _matmul_params(model_dir: str) -> int | None:
    """Parameters of the encoder's matrix products (L x (4H^2 + 2HI)), from config.json."""
    try:
        c = json.loads((Path(model_dir) / "config.json").read_text())
        layers, hidden, inner = c["num_hidden_layers"], c["hidden_size"], c["intermediate_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return int(layers * (4 * hidden * hidden + 2 * hidden * inner))


def _student_params(s: StudentConfig) -> int:
    h = s.hidden_size
    return s.num_hidden_layers * (4 * h * h + 2 * h * s.intermediate_size)


def _count_lines(path: Path) -> int:
    """Lines of a split's file (all of it for a split that names some rows: an upper bound)."""
    try:
        with open(split_source(path)[0], "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _train_rows(cfg: RunConfig, augmented: bool) -> int:
    rows = _count_lines(train_path(cfg.task)) if cfg.task.data_dir or cfg.task.train_file else 0
    if cfg.task.max_train_examples:
        rows = min(rows, cfg.task.max_train_examples) if rows else cfg.task.max_train_examples
    return rows * (cfg.augment.n + 1) if augmented else rows


def _dev_rows(cfg: RunConfig) -> int:
    try:
        files = task_spec(cfg.task).dev_splits.values()
    except Exception:  # an unknown task: the stage itself reports it
        return 0
    rows = sum(_count_lines(Path(cfg.task.data_dir) / f) for f in files)
    return min(rows, cfg.task.max_eval_examples or rows)


def _corpus_rows(path: str) -> int | None:
    try:
        return int(json.loads((Path(path) / "meta.json").read_text())["sequences"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Clock:
    """Seconds per unit of cost, from the stages that did work, and the time left."""

    def __init__(self, costs: dict[str, float | None]):
        self.costs = costs
        self.spent = 0.0  # seconds of timed stages with a cost
        self.counted = 0.0  # their cost

    def done(self, name: str, seconds: float, worked: bool) -> None:
        cost = self.costs.get(name)
        if worked and cost:
            self.spent += seconds
            self.counted += cost

    def left(self, names: list[str]) -> float | None:
        """Estimated seconds for `names` (stages not run yet), or None before any timing."""
        if not self.counted:
            return None
        return self.spent / self.counted * sum(self.costs.get(n) or 0.0 for n in names)
