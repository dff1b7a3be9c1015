"""The one batched inference loop: logits of a model over a dataset, and dev-set metrics.

Evaluation during training, `tinybert evaluate` (PyTorch or ONNX Runtime), export's checks,
`predict`, and phase 2's pass of the teacher over the training set all run `predict_logits`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import torch
from torch import nn

from tinybert.data.base import TaskSpec
from tinybert.data.batching import collate
from tinybert.data.clue import decode_spans, score_entities
from tinybert.data.metrics import compute_metrics
from tinybert.data.tokenization import TaskDataset
from tinybert.model import AnyBertModel

# The model inputs of one batch by name (not train.objective.Batch, the training batch).
Inputs = dict[str, torch.Tensor]
# A backend-agnostic model: a collated batch (input_ids, attention_mask, token_type_ids: (B, T)
# int64 CPU tensors) -> logits (B, C) or (B, T, C), a tensor or a numpy array. PyTorch modules
# and ONNX Runtime sessions (tinybert.export.runtime) both fit, so one loop runs either.
LogitsFn = Callable[[Inputs], "torch.Tensor | np.ndarray"]


class TokenLogits:
    """Token tasks' logits of N rows as one contiguous (total_tokens, C) float32 tensor and row
    offsets; `logits[i]` is a view of row i's (T_i, C) real tokens. One tensor rather than N
    small ones keeps a large cache (phase 2 on a 20x augmented set) off the Python heap."""

    def __init__(self, values: torch.Tensor, lengths: Sequence[int] | np.ndarray):
        self.values = values
        self.offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(np.asarray(lengths, dtype=np.int64), out=self.offsets[1:])
        if len(values) != self.offsets[-1]:
            raise ValueError(f"{len(values)} token rows for {self.offsets[-1]} tokens")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.values[int(self.offsets[i]) : int(self.offsets[i + 1])]


# (N, C) float32 for sequence tasks; token tasks: TokenLogits, each example's real tokens.
Logits = torch.Tensor | TokenLogits


def torch_logits_fn(
    model: nn.Module, device: torch.device | None = None
) -> Callable[[Inputs], torch.Tensor]:
    """`model` (a tinybert head model) as a LogitsFn; batches move to `device` (default CPU)."""
    device = device or torch.device("cpu")

    def logits(batch: Inputs) -> torch.Tensor:
        return model(
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            batch["token_type_ids"].to(device),
        ).logits

    return logits


def bf16_logits_fn(
    model: nn.Module, device: torch.device | None = None
) -> Callable[[Inputs], torch.Tensor]:
    """`model` with bf16 weights as a LogitsFn returning float32 logits. Converts `model` in
    place (pass a copy to keep an fp32 one). On a CPU with native bf16 it is faster than fp32
    weights under autocast, which casts every weight again on every call."""
    fn = torch_logits_fn(model.to(dtype=torch.bfloat16), device)

    def logits(batch: Inputs) -> torch.Tensor:
        with torch.inference_mode():
            return fn(batch).float()

    return logits


def dataset_collate(dataset: TaskDataset, pad_id: int) -> Callable[[list[int]], Inputs]:
    return lambda indices: collate([dataset[i] for i in indices], pad_id=pad_id)


@torch.no_grad()
def predict_logits(
    model: nn.Module | LogitsFn,
    dataset: TaskDataset,
    batch_size: int,
    device: torch.device | None = None,
    pad_id: int = 0,
    progress: Callable[[int], object] | None = None,
) -> Logits:
    """The model's logits for every example of `dataset`, float32 on CPU, in dataset order.

    `model` is an nn.Module (run in eval mode on `device`, its mode restored after) or any
    LogitsFn. `progress(n)` is called after each batch with its number of examples.
    """
    collate_fn = dataset_collate(dataset, pad_id)
    return logits_over(model, dataset.lengths, collate_fn, batch_size, device, progress)


@torch.no_grad()
def logits_over(
    model: nn.Module | LogitsFn,
    lengths: Sequence[int] | np.ndarray,
    collate_fn: Callable[[list[int]], Inputs],
    batch_size: int,
    device: torch.device | None = None,
    progress: Callable[[int], object] | None = None,
) -> Logits:
    """predict_logits over any indexable data: `collate_fn(indices)` builds a batch of those rows.

    Rows are batched shortest first, so each batch pads to a similar length, and put back in
    their order. Sequence tasks: one (N, C) tensor; token tasks: each row's (T_i, C) real tokens.
    """
    if not isinstance(model, nn.Module):
        return _run_batches(model, lengths, collate_fn, batch_size, progress)
    was_training = model.training
    model.eval()
    try:
        fn = torch_logits_fn(model, device)
        out = _run_batches(fn, lengths, collate_fn, batch_size, progress)
    finally:
        model.train(was_training)
    if len(lengths) == 0:  # no batch to count the labels: a tinybert model's config says
        return torch.empty(0, cast(AnyBertModel, model).config.num_labels)
    return out


def _run_batches(
    fn: LogitsFn,
    lengths: Sequence[int] | np.ndarray,
    collate_fn: Callable[[list[int]], Inputs],
    batch_size: int,
    progress: Callable[[int], object] | None,
) -> Logits:
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))])
    out = torch.empty(0, 0)
    token = False
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        batch = collate_fn(indices)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        logits = torch.as_tensor(fn(inputs)).float().cpu()
        if start == 0:  # the label count is known once the first batch is out
            token = logits.dim() == 3  # (B, T, C): each example's real tokens are kept
            rows = int(offsets[-1]) if token else len(lengths)
            out = torch.empty(rows, logits.shape[-1])
        for row, i in enumerate(indices):
            if token:
                out[offsets[i] : offsets[i + 1]] = logits[row, : lengths[i]]
            else:
                out[i] = logits[row]
        if progress is not None:
            progress(len(indices))
    return TokenLogits(out, lengths) if token else out


def evaluate_splits(
    model: nn.Module | LogitsFn,
    splits: dict[str, TaskDataset],
    task: TaskSpec,
    batch_size: int,
    device: torch.device | None = None,
    pad_id: int = 0,
) -> dict[str, float]:
    """Metrics of `model` (an nn.Module or a LogitsFn) on each dev split; keys are prefixed
    "split/" when there are several. Besides the task's metrics: `n_examples`, and for
    classification `predicted_classes` (how many classes the model predicts at all: 1 means
    it answers the same for every row)."""
    results: dict[str, float] = {}
    for name, dataset in splits.items():
        logits = predict_logits(model, dataset, batch_size, device, pad_id)
        if task.kind == "token":
            assert isinstance(logits, TokenLogits)
            metrics = token_metrics(task, dataset, logits)
        else:
            assert isinstance(logits, torch.Tensor)
            metrics = sequence_metrics(task, dataset, logits)
        prefix = "" if len(splits) == 1 else f"{name}/"
        results.update({prefix + k: v for k, v in metrics.items()})
    return results


def sequence_metrics(task: TaskSpec, dataset: TaskDataset, logits: torch.Tensor) -> dict:
    labels = np.asarray(dataset.labels)
    if task.is_regression:
        preds = logits.squeeze(-1).numpy()
        return {**compute_metrics(task, preds, labels), "n_examples": len(dataset)}
    preds = logits.argmax(-1).numpy()
    return {
        **compute_metrics(task, preds, labels),
        "n_examples": len(dataset),
        "predicted_classes": len(np.unique(preds)),
    }


def predicted_entities(task: TaskSpec, dataset: TaskDataset, i: int, logits: torch.Tensor) -> set:
    """Example i's entities (type, start, end inclusive, characters) from its token logits
    (T_i, C); [CLS]/[SEP] (tag -100) never carry a tag."""
    assert dataset.tag_ids is not None
    scored = dataset.tag_ids[dataset.offsets[i] : dataset.offsets[i + 1]] != -100
    best = logits.argmax(-1).tolist()
    tags = [task.labels[t] if ok else None for t, ok in zip(best, scored, strict=True)]
    return decode_spans(tags, dataset.token_char_spans(i))


def token_metrics(task: TaskSpec, dataset: TaskDataset, logits: TokenLogits) -> dict:
    """NER: entity precision/recall/F1 (exact span and type, micro, and F1 per type) against
    the gold entities of the file, and token accuracy over scored tokens as a secondary figure.
    Entities cut off by max_seq_length count as missed."""
    assert dataset.tag_ids is not None and dataset.gold_spans is not None
    predicted = [predicted_entities(task, dataset, i, logits[i]) for i in range(len(dataset))]
    right = total = 0
    for i in range(len(dataset)):
        gold = dataset.tag_ids[dataset.offsets[i] : dataset.offsets[i + 1]]
        scored = gold != -100
        right += int((logits[i].argmax(-1).numpy()[scored] == gold[scored]).sum())
        total += int(scored.sum())
    scores = score_entities(dataset.gold_spans, predicted)
    return {**scores, "token_accuracy": right / total if total else 0.0, "n_examples": len(dataset)}
