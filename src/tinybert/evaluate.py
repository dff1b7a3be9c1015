"""Evaluation: GLUE metrics (numpy in, python float out), then running a model over dev sets.

Metrics follow the GLUE conventions: F1 is binary with class 1 positive (MRPC, QQP), MCC is
for CoLA, Pearson/Spearman for STS-B. Where a metric is undefined (no variance, no positives)
it is 0.0 rather than NaN, so a collapsed model scores as "no correlation" and best-checkpoint
selection keeps working.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from tinybert.data import collate
from tinybert.data.clue import decode_spans, score_entities
from tinybert.errors import UserError

if TYPE_CHECKING:
    from tinybert.data import TaskDataset, TaskSpec

# --------------------------------------------------------------------------------------------
# metrics


def _pair(preds: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(preds).reshape(-1), np.asarray(labels).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{p.size} predictions but {y.size} labels")
    if p.size == 0:
        raise ValueError("cannot compute a metric over zero examples")
    return p, y


def accuracy(preds: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of predictions equal to the label. preds, labels: (N,)."""
    p, y = _pair(preds, labels)
    return float(np.mean(p == y))


def f1(preds: ArrayLike, labels: ArrayLike) -> float:
    """Binary F1 with class 1 positive: 2TP / (2TP + FP + FN); 0.0 when there are no positives."""
    p, y = _pair(preds, labels)
    p, y = p == 1, y == 1
    tp = int(np.sum(p & y))
    denom = 2 * tp + int(np.sum(p & ~y)) + int(np.sum(~p & y))
    return 2 * tp / denom if denom else 0.0


def matthews_corrcoef(preds: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation coefficient (multi-class form; binary is the usual MCC).

    MCC = (c*s - t.p) / sqrt((s^2 - p.p) * (s^2 - t.t)) with s examples, c correct, and t, p
    the per-class counts of labels and predictions. 0.0 when undefined (e.g. one class predicted).
    """
    p, y = _pair(preds, labels)
    classes, p_idx = np.unique(np.concatenate([p, y]), return_inverse=True)
    p_idx, y_idx = p_idx[: p.size], p_idx[p.size :]
    k = classes.size
    # Python ints: s^2 * counts overflow nothing, unlike int64 products on huge sets.
    t = [int(n) for n in np.bincount(y_idx, minlength=k)]
    q = [int(n) for n in np.bincount(p_idx, minlength=k)]
    s, c = p.size, int(np.sum(p_idx == y_idx))
    cov_tp = c * s - sum(a * b for a, b in zip(t, q, strict=True))
    cov_pp = s * s - sum(b * b for b in q)
    cov_tt = s * s - sum(a * a for a in t)
    if cov_pp == 0 or cov_tt == 0:
        return 0.0
    return float(cov_tp / np.sqrt(float(cov_pp) * float(cov_tt)))


def pearson(preds: ArrayLike, labels: ArrayLike) -> float:
    """Pearson correlation of two (N,) arrays; 0.0 if either is constant; NaN in, NaN out."""
    p, y = _pair(preds, labels)
    dp = p.astype(np.float64) - p.mean(dtype=np.float64)
    dy = y.astype(np.float64) - y.mean(dtype=np.float64)
    denom = np.sqrt(np.sum(dp * dp) * np.sum(dy * dy))
    if denom == 0:
        return 0.0
    return float(np.clip(np.sum(dp * dy) / denom, -1.0, 1.0))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x (N,); tied values share the average of the ranks they span."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts_run = np.concatenate([[True], xs[1:] != xs[:-1]])  # first element of each tie run
    run = np.cumsum(starts_run) - 1  # run id of each sorted position
    first = np.flatnonzero(starts_run)  # 0-based start of each run
    last = np.concatenate([first[1:], [x.size]]) - 1  # 0-based end of each run
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = (first + last)[run] / 2 + 1
    return ranks


def spearman(preds: ArrayLike, labels: ArrayLike) -> float:
    """Spearman rank correlation: Pearson on average ranks (ties share their mean rank)."""
    p, y = _pair(preds, labels)
    if np.isnan(p.astype(np.float64)).any() or np.isnan(y.astype(np.float64)).any():
        return float("nan")  # a NaN has no rank
    return pearson(_average_ranks(p), _average_ranks(y))


METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}


def compute_metrics(task: TaskSpec, preds: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Every metric named in `task.metrics`, e.g. {"accuracy": 0.9, "f1": 0.88}.

    preds: class ids (N,) or logits (N, C) (argmax taken) for classification;
        values (N,) or (N, 1) for regression. labels: (N,).
    """
    unknown = [m for m in task.metrics if m not in METRICS]
    if unknown:
        raise UserError(
            f"task {task.name!r}: unknown metric(s) {unknown}; known metrics are {sorted(METRICS)}"
        )
    p = np.asarray(preds)
    if not task.is_regression and p.ndim == 2:
        p = p.argmax(axis=-1)
    return {m: METRICS[m](p, labels) for m in task.metrics}


# --------------------------------------------------------------------------------------------
# running a model over dev sets


# A backend-agnostic model: a collated batch (input_ids, attention_mask, token_type_ids: (B, T)
# int64 CPU tensors) -> logits (B, C), a tensor or a numpy array. PyTorch modules and ONNX
# Runtime sessions (tinybert.export.runtime) both fit, so one loop evaluates either.
LogitsFn = Callable[[dict[str, torch.Tensor]], "torch.Tensor | np.ndarray"]


def torch_logits_fn(model: nn.Module, device: torch.device | None = None) -> LogitsFn:
    """`model` (a tinybert head model) as a LogitsFn; batches move to `device` (default CPU)."""
    device = device or torch.device("cpu")

    def logits(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            batch["token_type_ids"].to(device),
        ).logits

    return logits


@torch.no_grad()
def predict_logits(
    model: nn.Module | LogitsFn,
    dataset: TaskDataset,
    batch_size: int,
    device: torch.device | None = None,
    pad_id: int = 0,
    progress: Callable[[int], object] | None = None,
) -> torch.Tensor:
    """The model's logits for every example, (N, C) float32 on CPU, in dataset order.

    `model` is an nn.Module (run in eval mode on `device`, its mode restored after) or any
    LogitsFn. Examples are batched shortest first, so each batch pads to a similar length.
    `progress(n)` is called after each batch with its number of examples.
    """
    if not isinstance(model, nn.Module):
        return _run_batches(model, dataset, batch_size, pad_id, progress)
    was_training = model.training
    model.eval()
    try:
        out = _run_batches(torch_logits_fn(model, device), dataset, batch_size, pad_id, progress)
    finally:
        model.train(was_training)
    return out if len(dataset) else torch.empty(0, model.config.num_labels)


def _run_batches(
    fn: LogitsFn,
    dataset: TaskDataset,
    batch_size: int,
    pad_id: int,
    progress: Callable[[int], object] | None,
) -> torch.Tensor:
    order = sorted(range(len(dataset)), key=dataset.lengths.__getitem__)
    out = torch.empty(0, 0)
    rows: list[torch.Tensor] = []  # token tasks: one (T_i, C) tensor per example
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        logits = torch.as_tensor(fn(collate([dataset[i] for i in indices], pad_id=pad_id)))
        logits = logits.float().cpu()
        if logits.dim() == 3:  # (B, T, C): keep each example's real tokens
            rows = rows or [torch.empty(0)] * len(dataset)
            for row, i in enumerate(indices):
                rows[i] = logits[row, : dataset.lengths[i]]
        else:
            if start == 0:  # the label count is known once the first batch is out
                out = torch.empty(len(dataset), *logits.shape[1:])
            out[indices] = logits
        if progress is not None:
            progress(len(indices))
    return rows if rows else out


def evaluate_splits(
    model: nn.Module | LogitsFn,
    splits: dict[str, TaskDataset],
    task: TaskSpec,
    batch_size: int,
    device: torch.device | None = None,
    pad_id: int = 0,
) -> dict[str, float]:
    """Metrics of `model` (an nn.Module or a LogitsFn, see predict_logits) on each dev split;
    keys are prefixed "split/" when there are several."""
    results: dict[str, float] = {}
    for name, dataset in splits.items():
        logits = predict_logits(model, dataset, batch_size, device, pad_id)
        if task.kind == "token":
            metrics = {**token_metrics(task, dataset, logits), "n_examples": len(dataset)}
        else:
            labels = np.array([dataset[i]["label"] for i in range(len(dataset))])
            preds = logits.squeeze(-1).numpy() if task.is_regression else logits.argmax(-1).numpy()
            metrics = {**compute_metrics(task, preds, labels), "n_examples": len(dataset)}
        prefix = "" if len(splits) == 1 else f"{name}/"
        results.update({prefix + k: v for k, v in metrics.items()})
    return results


def predicted_entities(task: TaskSpec, dataset: TaskDataset, i: int, logits: torch.Tensor) -> set:
    """Example i's entities (type, start, end inclusive, characters) from its token logits
    (T_i, C); [CLS]/[SEP] (tag -100) never carry a tag."""
    scored = np.asarray(dataset[i]["tag_ids"]) != -100
    best = logits.argmax(-1).tolist()
    tags = [task.labels[t] if ok else None for t, ok in zip(best, scored, strict=True)]
    return decode_spans(tags, dataset.token_char_spans(i))


def token_metrics(task: TaskSpec, dataset: TaskDataset, logits: list[torch.Tensor]) -> dict:
    """NER: entity precision/recall/F1 (exact span and type, micro, and F1 per type) against
    the gold entities of the file, and token accuracy over scored tokens as a secondary figure.
    Entities cut off by max_seq_length count as missed."""
    predicted = [predicted_entities(task, dataset, i, logits[i]) for i in range(len(dataset))]
    right = total = 0
    for i in range(len(dataset)):
        gold = np.asarray(dataset[i]["tag_ids"])
        scored = gold != -100
        right += int((logits[i].argmax(-1).numpy()[scored] == gold[scored]).sum())
        total += int(scored.sum())
    scores = score_entities(dataset.gold_spans, predicted)
    return {**scores, "token_accuracy": right / total if total else 0.0}
