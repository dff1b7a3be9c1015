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
from typing import Any

from tinybert.config import Config, StudentConfig, TrainConfig
from tinybert.data.base import split_source
from tinybert.data.task_data import task_spec, train_path
from tinybert.distill.teacher_cache import GB
from tinybert.pipeline.wiring import Stage, Wiring

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
    cache_fits: bool  # phase 1's teacher outputs fit intermediate.teacher_cache_gb

    @classmethod
    def of(cls, cfg: Config, w: Wiring) -> _Sizes:
        rows = _train_rows(cfg, augmented="augment" in cfg.run.stages)
        tokens = cfg.task.max_seq_length * TASK_FILL
        teacher = _read_config(w.teacher) or _read_config(w.base) or {}
        cache = rows * _cached_row_bytes(teacher, cfg.student.num_hidden_layers, tokens)
        return cls(
            teacher=_matmul_params(teacher) or 0,
            student=_student_params(cfg.student),
            tokens=tokens,
            rows=rows,
            dev=_dev_rows(cfg),
            cache_fits=0 < cache <= cfg.intermediate.teacher_cache_gb * GB,
        )


def stage_costs(stages: list[Stage], cfg: Config, w: Wiring) -> dict[str, float | None]:
    """Each stage's estimated cost by name; None where it cannot be said (prepare-corpus reads
    text, a different kind of work; report runs no model)."""
    sizes = _Sizes.of(cfg, w)
    return {stage.name: _cost(stage.name, cfg, w, sizes) for stage in stages}


def _cost(name: str, cfg: Config, w: Wiring, z: _Sizes) -> float | None:
    if name == "finetune":
        return _rows_seen(cfg.finetune, z.rows) * z.tokens * 6 * z.teacher
    if name == "general-distill":
        sequences = cfg.corpus.max_sequences or _corpus_rows(w.corpus) or 0
        length = cfg.corpus.max_seq_length
        return _rows_seen(cfg.general, sequences) * length * (6 * z.student + 2 * z.teacher)
    if name == "task-distill":
        # The teacher runs once per row when its outputs fit the phase-1 cache, else every epoch.
        teacher_rows = z.rows if z.cache_fits else _rows_seen(cfg.intermediate, z.rows)
        phase1 = _rows_seen(cfg.intermediate, z.rows) * 6 * z.student + teacher_rows * 2 * z.teacher
        phase2 = _rows_seen(cfg.prediction, z.rows) * 6 * z.student + z.rows * 2 * z.teacher
        phases = cfg.distill.phases
        return z.tokens * (phase1 * ("intermediate" in phases) + phase2 * ("prediction" in phases))
    if name == "augment":  # one masked-LM forward pass per word of every original row
        originals = z.rows / (cfg.augment.n + 1)
        mlm = _matmul_params(_read_config(cfg.augment.mlm)) or 0
        return originals * z.tokens * z.tokens * 2 * mlm
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


def _read_config(model_dir: str) -> dict[str, Any] | None:
    """A model directory's config.json, or None where there is none (yet)."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def _matmul_params(config: dict[str, Any] | None) -> int | None:
    """Parameters of the encoder's matrix products (L x (4H^2 + 2HI)), from a config.json."""
    if config is None:
        return None

    def key(name: str, distilbert: str) -> int:  # BERT's name (most families'), DistilBERT's
        return int(config[name] if name in config else config[distilbert])

    try:
        layers, hidden = key("num_hidden_layers", "n_layers"), key("hidden_size", "dim")
        inner = key("intermediate_size", "hidden_dim")
    except (KeyError, TypeError, ValueError):  # not an encoder's config
        return None
    return layers * (4 * hidden * hidden + 2 * hidden * inner)


def _cached_row_bytes(teacher: dict[str, Any], student_layers: int, tokens: float) -> float:
    """Bytes phase 1's teacher cache holds per row (distill/teacher_cache.py's layout, in fp32:
    an upper bound under bf16): one layer's scores (heads x T x T) per student layer, and the
    embedding output plus one hidden state (T x H) per student layer. 0 without a teacher."""
    try:
        heads, width = int(teacher["num_attention_heads"]), int(teacher["hidden_size"])
    except (KeyError, TypeError, ValueError):
        return 0.0
    return 4 * (student_layers * heads * tokens * tokens + (student_layers + 1) * tokens * width)


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


def _train_rows(cfg: Config, augmented: bool) -> int:
    rows = _count_lines(train_path(cfg.task)) if cfg.task.data_dir or cfg.task.train_file else 0
    if cfg.task.max_train_examples:
        rows = min(rows, cfg.task.max_train_examples) if rows else cfg.task.max_train_examples
    return rows * (cfg.augment.n + 1) if augmented else rows


def _dev_rows(cfg: Config) -> int:
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
