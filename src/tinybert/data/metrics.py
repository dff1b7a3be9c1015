"""GLUE and CLUE metrics: numpy in, python float out.

Metrics follow the GLUE conventions: F1 is binary with class 1 positive (MRPC, QQP), MCC is
for CoLA, Pearson/Spearman for STS-B, and `acc_and_f1` is GLUE's combined MRPC/QQP score (the
mean of accuracy and F1), which those tasks select their best checkpoint on: a model answering
"paraphrase" for every MRPC pair has F1 0.81 but a combined score of only 0.75. Where a metric
is undefined (no variance, no positives) it is 0.0 rather than NaN, so a collapsed model scores
as "no correlation" and best-checkpoint selection keeps working.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from tinybert.data.base import TaskSpec
from tinybert.errors import UserError


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
    if (p == p[0]).all() or (y == y[0]).all():  # tested as such: the mean of 0.4s is not 0.4
        return 0.0
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


def acc_and_f1(preds: ArrayLike, labels: ArrayLike) -> float:
    """GLUE's combined MRPC/QQP score: (accuracy + F1) / 2."""
    return (accuracy(preds, labels) + f1(preds, labels)) / 2


METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "acc_and_f1": acc_and_f1,
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
