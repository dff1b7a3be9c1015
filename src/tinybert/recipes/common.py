"""What the recipes share: the run context, loading a teacher, and dev-set evaluation."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tinybert.config import RunConfig, dump_yaml
from tinybert.data.base import TaskSpec
from tinybert.data.task_data import TaskData, check_labels, check_length
from tinybert.data.tokenization import TaskDataset
from tinybert.distill.student import Head, Start, freeze
from tinybert.errors import UserError
from tinybert.model import AnyBertModel, BertModel, LoadReport, load_model, save_model
from tinybert.train import distributed
from tinybert.train.inference import evaluate_splits
from tinybert.train.loop import Evaluation, RunContext, TrainData


def run_context(cfg: RunConfig, tokenizer_dir: str) -> RunContext:
    """Join torchrun's group if launched by it, pick the device; saved models get the
    tokenizer of `tokenizer_dir`."""
    dist, device = distributed.setup(cfg.device)
    return RunContext(
        root=Path(cfg.output_dir),
        device=device,
        save_model=lambda m, d: save_model(m, d, tokenizer_dir=tokenizer_dir),
        dist=dist,
        seed=cfg.seed,
        resume=cfg.resume,
        config_text=dump_yaml(cfg),
    )


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


def stage_settings(cfg: RunConfig, *keys: str) -> dict[str, Any]:
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


def load_teacher(path: str, head: Head, command: str, task: TaskSpec | None = None) -> AnyBertModel:
    """A frozen teacher from a Hugging Face directory. With a task, it must have that task's
    trained head (fine-tune it first); head="encoder" takes any BERT (general distillation)."""
    if not path:
        raise UserError(f"{command} needs teacher=<Hugging Face BERT directory>")
    teacher, report = load_model(path, head=head)
    if isinstance(teacher, BertModel):  # head == "encoder"
        teacher.pooler = None  # GD uses hidden states and attention scores only
    elif report.initialised:
        raise UserError(
            f"teacher {path} has no trained task head ({', '.join(report.initialised)}); "
            "fine-tune it first: tinybert finetune ..."
        )
    if task is not None:
        check_labels(teacher.config, task, f"teacher {path}")
    return freeze(teacher)


def report_new_weights(where: str, report: LoadReport) -> None:
    if report.initialised:
        tqdm.write(
            f"{where}: newly initialised (not in the checkpoint): {', '.join(report.initialised)}"
        )


def train_data(data: TaskData) -> TrainData:
    train = data.train_set()
    scored = None
    if train.tag_ids is not None:  # token tasks: each row's tokens with a label (not -100)
        upto = np.concatenate([[0], np.cumsum(train.tag_ids != -100)])
        scored = upto[train.offsets[1:]] - upto[train.offsets[:-1]]
    return TrainData(
        lengths=train.lengths,
        collate=data.collate_fn(train),
        scored=scored,
        content=lambda: task_content(train),
    )


def task_content(train: TaskDataset) -> Iterator[np.ndarray]:
    """A tokenised training set as the arrays that hold it, for the resume fingerprint: every
    token, segment, row boundary, label and tag. Cheap (they are in memory) and exact: what a
    batch is built from, so an edited sentence or a flipped label changes the hash."""
    yield train.ids
    yield train.type_ids
    yield train.offsets
    yield np.asarray(train.labels, dtype=np.float64)  # class indices are exact as float64 too
    if train.tag_ids is not None:
        yield train.tag_ids


def check_seq_length(cfg: RunConfig, config: Any, where: str) -> None:
    """task.max_seq_length must fit the position table of the model `where` names (the rule
    evaluate applies, task_data.check_length), checked before any data is read or trained on."""
    try:
        check_length(cfg.task.max_seq_length, config.max_position_embeddings)
    except UserError as exc:
        raise UserError(f"{where}: {exc}; lower task.max_seq_length") from None


def dev_evaluation(
    model: nn.Module, data: TaskData, batch_size: int, device: torch.device, metric: str | None
) -> Evaluation:
    """Evaluation on every dev split; `metric` (task.metric) overrides the task's default."""
    key = data.main_metric if metric is None else data.metric_key(metric)
    return Evaluation(
        run=lambda: evaluate_splits(model, data.dev, data.task, batch_size, device, data.pad_id),
        metric=key,
    )
