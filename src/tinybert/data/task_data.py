"""A task's data as training and evaluation use it: read, checked and tokenised.

data = load_training_data(cfg.task, "runs/sst2/teacher/best", seed=42,
                          models={"teacher runs/sst2/teacher/best": teacher.config})
data.train, data.dev["dev"]   # TaskDataset (or the seed's TFRecord splits)

`load_training_data` is the one place a training command checks its task against its models
(metric, labels, positions, vocabulary); `load_task_data` reads and tokenises (evaluation and
export check labels themselves, with `check_labels`).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from tinybert.config import TaskConfig
from tinybert.data import tfrecord
from tinybert.data.base import TaskSpec, split_source
from tinybert.data.batching import collate
from tinybert.data.tasks import ExampleStream, get_task
from tinybert.data.tokenization import (
    TaskDataset,
    encode_examples,
    load_tokenizer,
    table_may_be_padded,
    tokenizer_info,
)
from tinybert.errors import UserError


@dataclass
class TaskData:
    """A task's tokenised training set (None when only evaluating) and dev split(s)."""

    task: TaskSpec
    train: TaskDataset | None
    dev: dict[str, TaskDataset]  # split name -> dataset
    pad_id: int
    # split file -> rows left out: blank lines, malformed rows (task.on_bad_row=skip)
    skipped: dict[str, int]

    def collate_fn(self, dataset: TaskDataset) -> Callable[[list[int]], dict[str, torch.Tensor]]:
        return lambda indices: collate([dataset[i] for i in indices], pad_id=self.pad_id)

    @property
    def main_metric(self) -> str:
        """The key of the metric that picks the best checkpoint, as evaluate_splits names it."""
        return self.metric_key(self.task.main_metric)

    def metric_key(self, name: str) -> str:
        """`name` as evaluate_splits names it: prefixed by the first dev split if there are
        several (MNLI selects on dev_matched)."""
        check_metric(self.task, name)
        return name if len(self.dev) == 1 else f"{next(iter(self.dev))}/{name}"

    def train_set(self) -> TaskDataset:
        if self.train is None:
            raise RuntimeError("this TaskData was loaded without its training split")
        return self.train

    def train_scored(self) -> np.ndarray | None:
        """Token tasks: each training row's number of scored tokens (tags other than -100), from
        which a distributed run counts a global batch's; None for other tasks."""
        train = self.train_set()
        if train.tag_ids is None:
            return None
        upto = np.concatenate([[0], np.cumsum(train.tag_ids != -100)])
        return np.asarray(upto[train.offsets[1:]] - upto[train.offsets[:-1]])

    def train_content(self) -> Iterator[np.ndarray]:
        """The tokenised training set as the arrays that hold it, for the resume fingerprint:
        every token, segment, row boundary, label and tag. Cheap (they are in memory) and exact:
        what a batch is built from, so an edited sentence or a flipped label changes the hash."""
        train = self.train_set()
        yield train.ids
        yield train.type_ids
        yield train.offsets
        yield np.asarray(train.labels, dtype=np.float64)  # class indices are exact as float64 too
        if train.tag_ids is not None:
            yield train.tag_ids


def task_spec(cfg: TaskConfig) -> TaskSpec:
    return get_task(cfg.name, labels=cfg.labels, regression=cfg.regression)


def train_path(cfg: TaskConfig) -> Path:
    """The training file: task.train_file if given (e.g. `tinybert augment`'s output, in the
    task's own format), else the task's train split in task.data_dir."""
    if cfg.train_file:
        return Path(cfg.train_file)
    return Path(cfg.data_dir) / task_spec(cfg).train_split


def train_file_name(cfg: TaskConfig) -> str:
    """The training file's own name, without a split's row selector (SICK.txt#TRAIN ->
    SICK.txt): the default name of a copy such as `tinybert augment`'s output."""
    return split_source(train_path(cfg))[0].name


def check_length(max_seq_length: int, max_positions: int) -> None:
    """task.max_seq_length must fit the model's position table (max_position_embeddings)."""
    if max_seq_length > max_positions:
        raise UserError(
            f"task.max_seq_length {max_seq_length} is longer than the model's "
            f"max_position_embeddings ({max_positions})"
        )


def check_metric(task: TaskSpec, name: str | None) -> None:
    """`task.metric` (None: the task's own) must be one of the metrics the task is scored by;
    the recipes check it before any training, not at the first evaluation."""
    if name is not None and name not in task.metrics:
        raise UserError(
            f"task.metric={name!r}: task {task.name!r} is scored by "
            f"{', '.join(task.metrics)}; choose one of those"
        )


class ModelShape(Protocol):
    """What the task is checked against in a model's config (BertConfig has it all)."""

    @property
    def num_labels(self) -> int: ...
    @property
    def id2label(self) -> Sequence[str] | None: ...
    @property
    def max_position_embeddings(self) -> int: ...
    @property
    def vocab_size(self) -> int: ...


def load_training_data(
    cfg: TaskConfig, tokenizer_dir: str | Path, seed: int, models: Mapping[str, ModelShape]
) -> TaskData:
    """The task's data for training `models` (where, e.g. "teacher runs/x" -> its config),
    checked once, before any file is read: task.metric is one the task is scored by; each model
    has the task's labels (in order) and positions for task.max_seq_length; the tokenizer in
    `tokenizer_dir` fits their vocabulary (they share one; see load_task_data)."""
    check_metric(task_spec(cfg), cfg.metric)
    for where, config in models.items():
        check_model(cfg, config, where)
    vocab_size = next((config.vocab_size for config in models.values()), None)
    return load_task_data(cfg, tokenizer_dir, seed, vocab_size=vocab_size)


def check_model(cfg: TaskConfig, config: ModelShape, where: str) -> None:
    """A model (`where`, e.g. "student") fits the task: its labels are the task's, in the same
    order, and it has positions for task.max_seq_length. (load_training_data checks the models
    it is given so; a recipe checks a model built later, from those, the same way.)"""
    check_labels(config, task_spec(cfg), where)
    try:
        check_length(cfg.max_seq_length, config.max_position_embeddings)
    except UserError as exc:
        raise UserError(f"{where}: {exc}; lower task.max_seq_length") from None


def load_task_data(
    cfg: TaskConfig,
    tokenizer_dir: str | Path,
    seed: int,
    train: bool = True,
    vocab_size: int | None = None,
    quiet: bool = False,
) -> TaskData:
    """Read, check and tokenise the task's files with the tokenizer in `tokenizer_dir`.

    `vocab_size` (the model's embedding rows) must equal the tokenizer's size: more tokens than
    rows fail deep inside the model, and fewer (a truncated vocab.txt) silently turn words into
    [UNK]. `task.allow_smaller_vocab` accepts the second, e.g. an embedding table padded to a
    multiple of 8. `quiet`: report skipped rows only in `TaskData.skipped`, not on the console.
    """
    task = task_spec(cfg)
    tokenizer = load_tokenizer(tokenizer_dir)
    n_vocab, pad_id = tokenizer_info(tokenizer)
    if vocab_size is not None:
        padded = table_may_be_padded(tokenizer_dir)
        check_vocab(n_vocab, vocab_size, tokenizer_dir, cfg.allow_smaller_vocab or padded)
    data_dir = Path(cfg.data_dir)
    if not data_dir.is_dir():
        raise UserError(f"task.data_dir: folder not found: {data_dir}")
    seed_data = tfrecord.is_tfrecord_dir(data_dir)
    if seed_data and task.is_regression:
        raise UserError(f"{data_dir}: TFRecord data holds int64 label_ids; regression needs TSV")
    if seed_data and task.kind == "token":
        # The seed's NER records hold one tag id per token in its own tag order; reading them as
        # one class per sentence would be silently wrong.
        raise UserError(
            f"{data_dir}: TFRecord data is read for sentence(-pair) tasks only; for {task.name} "
            "point task.data_dir at the task's text files (CLUENER: train.json, dev.json)"
        )
    train_file = train_path(cfg)
    if seed_data and cfg.train_file:
        raise UserError(
            f"task.train_file={cfg.train_file}: {data_dir} holds TFRecord data, whose records are "
            f"already tokenised; train_file is read as {task.name} text: use it with a data_dir "
            "of text files"
        )
    skipped: dict[str, int] = {}

    def split(path: Path, limit: int | None, sample: bool) -> TaskDataset:
        if seed_data:  # the seed's pre-tokenised TFRecord split (train*.tfrecord, dev*.tfrecord)
            data = tfrecord.task_dataset(data_dir, path.stem, len(task.labels), n_vocab)
            return _limit(data, limit, sample, seed)
        stream = ExampleStream(task, path, on_error=cfg.on_bad_row)
        examples = list(stream)
        notice = stream.notice()
        if notice is not None:
            skipped[str(path)] = stream.skipped + stream.blank
            if not quiet:
                tqdm.write(notice, file=sys.stderr)
        if limit is not None and limit < len(examples):
            # A seeded random sample, not the first rows: files are often sorted by label or length.
            examples = random.Random(seed).sample(examples, limit) if sample else examples[:limit]
        return encode_examples(tokenizer, examples, task, cfg.max_seq_length)

    train_set = split(train_file, cfg.max_train_examples, True) if train else None
    dev = {
        name: split(data_dir / file, cfg.max_eval_examples, False)
        for name, file in task.dev_splits.items()
    }
    return TaskData(task=task, train=train_set, dev=dev, pad_id=pad_id, skipped=skipped)


def _limit(data: TaskDataset, limit: int | None, sample: bool, seed: int) -> TaskDataset:
    if limit is None or limit >= len(data):
        return data
    keep = random.Random(seed).sample(range(len(data)), limit) if sample else range(limit)
    return data.subset(list(keep))


def check_vocab(
    n_vocab: int,
    vocab_size: int,
    tokenizer_dir: str | Path,
    allow_smaller: bool,
    allow_with: str = "task.allow_smaller_vocab=true",
) -> None:
    """The tokenizer's size against the model's embedding rows (see load_task_data).
    `allow_with` is how the user accepts a smaller one (a config key or a flag)."""
    if n_vocab > vocab_size:
        raise UserError(
            f"the tokenizer in {tokenizer_dir} has {n_vocab} tokens but the model's vocab_size is "
            f"{vocab_size}: tokenizer and model do not belong together"
        )
    if n_vocab < vocab_size and not allow_smaller:
        raise UserError(
            f"the tokenizer in {tokenizer_dir} has {n_vocab} tokens but the model's vocab_size is "
            f"{vocab_size}: a vocab.txt shorter than the embedding table usually means the wrong "
            f"or a truncated vocabulary; if the table is only padded, pass {allow_with}"
        )


class HasLabels(Protocol):
    """A model config's head description (BertConfig has it; so does an export's config.json)."""

    @property
    def num_labels(self) -> int: ...
    @property
    def id2label(self) -> Sequence[str] | None: ...


def check_labels(config: HasLabels, task: TaskSpec, where: str) -> None:
    """A model's label names must be the task's, in the same order (else accuracy is garbage)."""
    expected = 1 if task.is_regression else len(task.labels)
    if config.num_labels != expected:
        raise UserError(
            f"{where} has {config.num_labels} outputs but task '{task.name}' needs {expected}"
        )
    names = config.id2label
    generic = names is None or all(n == f"LABEL_{i}" for i, n in enumerate(names))
    if not task.is_regression and not generic and tuple(names or ()) != tuple(task.labels):
        raise UserError(
            f"{where} labels {list(names or ())} differ from task '{task.name}' labels "
            f"{list(task.labels)} (order matters); fine-tune a teacher on this task first"
        )
