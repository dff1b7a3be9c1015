"""What the recipes share: the run context, loading a teacher, and dev-set evaluation."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from tinybert.config import RunConfig
from tinybert.data.base import TaskSpec
from tinybert.data.task_data import TaskData, check_labels
from tinybert.distill.student import Head, freeze
from tinybert.errors import UserError
from tinybert.model import LoadReport, load_model, save_model
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
    )


def load_teacher(path: str, head: Head, command: str, task: TaskSpec | None = None) -> nn.Module:
    """A frozen teacher from a Hugging Face directory. With a task, it must have that task's
    trained head (fine-tune it first); head="encoder" takes any BERT (general distillation)."""
    if not path:
        raise UserError(f"{command} needs teacher=<Hugging Face BERT directory>")
    teacher, report = load_model(path, head=head)
    if head == "encoder":
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
    return TrainData(lengths=train.lengths, collate=data.collate_fn(train))


def dev_evaluation(
    model: nn.Module, data: TaskData, batch_size: int, device: torch.device, metric: str | None
) -> Evaluation:
    """Evaluation on every dev split; `metric` (task.metric) overrides the task's default."""
    key = data.main_metric if metric is None else data.metric_key(metric)
    return Evaluation(
        run=lambda: evaluate_splits(model, data.dev, data.task, batch_size, device, data.pad_id),
        metric=key,
    )
