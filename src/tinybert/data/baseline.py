"""The trivial baseline of a dev set, and whether a model does better than it.

Every score tinybert shows stands beside what a model that learned nothing scores on the same
dev rows, computed from the dev labels alone:
- classification: always the majority class (ties: the lowest class id), scored with the task's
  own metrics (MRPC: accuracy 0.68, F1 0.81, acc_and_f1 0.75; MCC is always 0);
- regression: always the mean gold score (Pearson and Spearman 0);
- token tasks (CLUENER): no entity at all (entity precision, recall and F1 0; token accuracy
  is the share of scored tokens tagged "O").

A model is *trivial* when its main metric beats the baseline by less than `margin(metric)`:
1 point (0.01) for accuracy-like metrics, 0.02 for correlations (MCC, Pearson, Spearman), which
vary more on small dev sets. A model scoring below the baseline is trivial too.

    baseline = split_baselines(task, data.dev)  # {"accuracy": 0.5, ...}, keys as evaluate_splits
    verdict = judge(task, data.dev, "accuracy", metrics, baseline)  # {"trivial": False, ...}
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from tinybert.data.base import TaskSpec
from tinybert.data.clue import score_entities
from tinybert.data.metrics import compute_metrics
from tinybert.data.tokenization import TaskDataset

# How far (as a fraction: 0.01 = 1 point) a model's main metric must beat the baseline.
TRIVIAL_MARGIN = 0.01
CORRELATION_MARGIN = 0.02
CORRELATIONS = ("mcc", "pearson", "spearman")
OUTSIDE_TAG = "O"  # a token task's "no entity" class (bios_tags puts it first)


def majority_class(labels: ArrayLike, n_classes: int) -> int:
    """The most common class id of labels (N,); a tie goes to the lowest id."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64).reshape(-1), minlength=n_classes)
    return int(counts.argmax())  # argmax returns the first of equal counts


def sequence_baseline(task: TaskSpec, labels: ArrayLike) -> dict[str, float]:
    """The task's metrics of a constant prediction over labels (N,): the majority class for
    classification, the mean score for regression."""
    y = np.asarray(labels)
    if task.is_regression:
        constant = np.full(y.shape, y.astype(np.float64).mean())
    else:
        constant = np.full(y.shape, majority_class(y, len(task.labels)))
    return compute_metrics(task, constant, y)


def token_baseline(task: TaskSpec, dataset: TaskDataset) -> dict[str, float]:
    """Token tasks: the metrics of predicting no entity, with token_metrics' keys (entity
    precision/recall/F1, F1 per gold type, token accuracy) less n_examples."""
    assert dataset.tag_ids is not None and dataset.gold_spans is not None
    scores = score_entities(dataset.gold_spans, [frozenset()] * len(dataset))
    scored = dataset.tag_ids[dataset.tag_ids != -100]  # [CLS]/[SEP] are never scored
    outside = task.labels.index(OUTSIDE_TAG)
    accuracy = float(np.mean(scored == outside)) if scored.size else 0.0
    return {**scores, "token_accuracy": accuracy}


def dataset_baseline(task: TaskSpec, dataset: TaskDataset) -> dict[str, float]:
    """The baseline metrics of one dev split, keyed as evaluate_splits keys a model's."""
    if task.kind == "token":
        return token_baseline(task, dataset)
    return sequence_baseline(task, dataset.labels)


def split_baselines(task: TaskSpec, splits: dict[str, TaskDataset]) -> dict[str, float]:
    """The baseline of every dev split; keys prefixed "split/" when there are several, as
    evaluate_splits prefixes a model's metrics (MNLI: "dev_matched/accuracy")."""
    results: dict[str, float] = {}
    for name, dataset in splits.items():
        prefix = "" if len(splits) == 1 else f"{name}/"
        results.update({prefix + k: v for k, v in dataset_baseline(task, dataset).items()})
    return results


def describe(task: TaskSpec, dataset: TaskDataset) -> str:
    """The baseline in words: "always '1' (the majority class)", "always the mean score
    2.7000", "no entities"."""
    if task.kind == "token":
        return "no entities"
    if task.is_regression:
        return f"always the mean score {np.mean(np.asarray(dataset.labels, dtype=np.float64)):.4f}"
    majority = majority_class(dataset.labels, len(task.labels))
    return f"always {task.labels[majority]!r} (the majority class)"


def margin(metric: str) -> float:
    """How much better than the baseline `metric` ("mcc" or "dev_matched/accuracy") must be."""
    return CORRELATION_MARGIN if metric.rpartition("/")[2] in CORRELATIONS else TRIVIAL_MARGIN


def is_trivial(metric: str, value: float, baseline: float) -> bool:
    """True when `value` beats `baseline` by less than margin(metric), or is not a number."""
    if not math.isfinite(value):
        return True
    # 1e-9: exactly one margin better counts as better, whatever the float rounding
    return value - baseline < margin(metric) - 1e-9


def judge(
    task: TaskSpec,
    splits: dict[str, TaskDataset],
    key: str,
    metrics: dict[str, float],
    baseline: dict[str, float],
) -> dict:
    """The verdict on a model's main metric `key` (as evaluate_splits names it):
    {"metric", "value", "baseline", "margin", "trivial", "baseline_is"[, "single_class"]}.
    single_class (classification): the model answers the same class for every row of the
    main metric's split."""
    split = key.rpartition("/")[0]
    dataset = splits[split] if split in splits else next(iter(splits.values()))
    value, base = float(metrics[key]), float(baseline[key])
    verdict = {
        "metric": key,
        "value": value,
        "baseline": base,
        "margin": margin(key),
        "trivial": is_trivial(key, value, base),
        "baseline_is": describe(task, dataset),
    }
    classes = metrics.get(f"{split}/predicted_classes" if split else "predicted_classes")
    if classes is not None:
        verdict["single_class"] = classes == 1
    return verdict
