"""What the recipes share: what defines a stage (for resume), and dev-set evaluation."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from tinybert.config import Config
from tinybert.data.task_data import TaskData
from tinybert.distill.student import Start
from tinybert.model import LoadReport
from tinybert.train.inference import evaluate_splits
from tinybert.train.loop import Evaluation

# What defines a stage beyond its own TrainConfig section (see Trainer.fingerprint): resuming
# with another value of any of these is refused. Sections ("student") stand for all their keys.
TASK_KEYS = (
    "task.name",
    "task.data_dir",
    "task.train_file",
    "task.labels",
    "task.regression",
    "task.max_seq_length",
    "task.max_train_examples",
)
EVAL_KEYS = ("task.max_eval_examples", "task.metric")  # what picks best/
PHASE1_KEYS = (  # the attention, hidden-state and embedding losses (TD phase 1, GD)
    "distill.layer_map",
    "distill.attention_weight",
    "distill.hidden_weight",
    "distill.embedding_weight",
    "distill.loss_mode",
    "distill.shared_projection",
)
PATH_KEYS = frozenset(
    {"model", "teacher", "task.data_dir", "task.train_file", "corpus.path", "student.path"}
)


def stage_settings(cfg: Config, *keys: str) -> dict[str, Any]:
    """Dotted config keys -> their values, paths made absolute (`data` and `./data` are one)."""
    out: dict[str, Any] = {}
    for key in keys:
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if dataclasses.is_dataclass(value):
            names = [f"{key}.{f.name}" for f in dataclasses.fields(value)]
            out.update(stage_settings(cfg, *names))
        elif key in PATH_KEYS and value:
            out[key] = str(Path(value).resolve())
        else:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def start_settings(start: Start) -> dict[str, Any]:
    """The student's resolved start as a stage setting: with student.init=auto, what it became
    (e.g. select, and which layers), so a resume that would start differently is refused."""
    record = start.to_dict()
    return {k: record[k] for k in ("init", "source", "layers")}


def weights_digest(model: nn.Module) -> str:
    """A hash of a model's weights (names, shapes, values)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def report_new_weights(where: str, report: LoadReport) -> None:
    if report.initialised:
        tqdm.write(
            f"{where}: newly initialised (not in the checkpoint): {', '.join(report.initialised)}"
        )


def dev_evaluation(
    model: nn.Module, data: TaskData, batch_size: int, device: torch.device, metric: str | None
) -> Evaluation:
    """Evaluation on every dev split; `metric` (task.metric) overrides the task's default."""
    key = data.main_metric if metric is None else data.metric_key(metric)
    return Evaluation(
        run=lambda: evaluate_splits(model, data.dev, data.task, batch_size, device, data.pad_id),
        metric=key,
    )
