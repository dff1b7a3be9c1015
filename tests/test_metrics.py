"""GLUE metrics against values worked out by hand (the arithmetic is in the comments)."""

from dataclasses import dataclass

import numpy as np
import pytest

from tinybert.data.metrics import (
    _average_ranks,
    accuracy,
    compute_metrics,
    f1,
    matthews_corrcoef,
    pearson,
    spearman,
)
from tinybert.errors import UserError

# preds vs labels: TP at 0 and 2, FN at 1, FP at 3 -> TP=2, FP=1, FN=1, TN=0
PREDS = [1, 0, 1, 1]
LABELS = [1, 1, 1, 0]


def test_accuracy():
    assert accuracy(PREDS, LABELS) == 0.5  # positions 0 and 2 of 4
    assert accuracy(np.array([2, 0, 1]), np.array([2, 0, 1])) == 1.0
    assert isinstance(accuracy(PREDS, LABELS), float)


def test_f1():
    # 2TP / (2TP + FP + FN) = 4 / 6
    assert f1(PREDS, LABELS) == pytest.approx(2 / 3)
    assert f1([0, 0, 0], [0, 0, 0]) == 0.0  # no positives at all: defined as 0
    assert f1([0, 0], [1, 1]) == 0.0  # no positives predicted
    assert f1([1, 1, 0], [1, 1, 0]) == 1.0


def test_matthews_binary():
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (0 - 1) / sqrt(3*3*1*1) = -1/3
    assert matthews_corrcoef(PREDS, LABELS) == pytest.approx(-1 / 3)
    # TP=2 (0, 4), FP=1 (1), TN=2 (2, 3), FN=1 (5): (4 - 1) / sqrt(3*3*3*3) = 1/3
    assert matthews_corrcoef([1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 1]) == pytest.approx(1 / 3)
    assert matthews_corrcoef([1, 0, 1], [1, 0, 1]) == pytest.approx(1.0)
    assert matthews_corrcoef([0, 1, 0], [1, 0, 1]) == pytest.approx(-1.0)
    # the class names do not matter: {-1, +1} gives the same as {0, 1}
    assert matthews_corrcoef([1, -1, 1, 1], [1, 1, 1, -1]) == pytest.approx(-1 / 3)


def test_matthews_undefined_is_zero():
    assert matthews_corrcoef([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0  # one class predicted
    assert matthews_corrcoef([1, 0, 1, 0], [0, 0, 0, 0]) == 0.0  # one class in labels


def test_matthews_multiclass():
    # labels [0, 1, 2, 0], preds [0, 2, 2, 0]: s=4 examples, c=3 correct,
    # label counts t=[2, 1, 1], pred counts p=[2, 0, 2]
    # (c*s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)) = (12 - 6) / sqrt((16 - 8)(16 - 6)) = 6/sqrt(80)
    assert matthews_corrcoef([0, 2, 2, 0], [0, 1, 2, 0]) == pytest.approx(6 / np.sqrt(80))


def test_pearson():
    # x=[1,2,3], y=[1,2,5]: deviations dx=[-1,0,1], dy=[-5/3,-2/3,7/3]
    # sum dx*dy = 5/3 + 7/3 = 4; sum dx^2 = 2; sum dy^2 = 78/9 -> 4 / sqrt(156/9) = 12/sqrt(156)
    assert pearson([1, 2, 3], [1, 2, 5]) == pytest.approx(12 / np.sqrt(156))
    assert pearson([1.0, 2.0, 3.0], [-2.0, -4.0, -6.0]) == pytest.approx(-1.0)
    assert pearson([3.0, 3.0, 3.0], [1.0, 2.0, 3.0]) == 0.0  # constant: undefined -> 0
    assert np.isnan(pearson([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]))
    assert isinstance(pearson([1, 2, 3], [1, 2, 5]), float)


def test_average_ranks():
    # sorted: 1 (rank 1), 2 (rank 2), 3, 3, 3 (ranks 3, 4, 5 -> each 4)
    assert _average_ranks(np.array([3, 1, 3, 2, 3])).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]
    assert _average_ranks(np.array([0.5, -1.0])).tolist() == [2.0, 1.0]
    assert _average_ranks(np.array([7, 7])).tolist() == [1.5, 1.5]


def test_spearman():
    # ranks of x=[10,20,20,30] are [1, 2.5, 2.5, 4]; of y=[1,3,2,4] are [1, 3, 2, 4]
    # deviations from 2.5: dx=[-1.5,0,0,1.5], dy=[-1.5,0.5,-0.5,1.5]
    # sum dx*dy = 4.5; sum dx^2 = 4.5; sum dy^2 = 5 -> 4.5 / sqrt(22.5)
    assert spearman([10, 20, 20, 30], [1, 3, 2, 4]) == pytest.approx(4.5 / np.sqrt(22.5))
    # any monotone relation is a perfect rank correlation
    x = np.array([0.1, 0.5, 2.0, 3.0, 9.0])
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_metrics_reject_mismatched_or_empty_inputs():
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        accuracy([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="zero examples"):
        f1([], [])


@dataclass(frozen=True)
class FakeTask:  # the fields of tinybert.data.TaskSpec that compute_metrics reads
    name: str
    metrics: tuple[str, ...]
    is_regression: bool = False


def test_compute_metrics_classification():
    task = FakeTask("mrpc", ("accuracy", "f1"))
    got = compute_metrics(task, np.array(PREDS), np.array(LABELS))
    assert got == {"accuracy": 0.5, "f1": pytest.approx(2 / 3)}
    assert list(got) == ["accuracy", "f1"]
    # logits (N, C) are turned into class ids by argmax
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.0, 1.0], [-3.0, 3.0]])
    assert compute_metrics(task, logits, LABELS) == got
    assert compute_metrics(FakeTask("cola", ("mcc",)), PREDS, LABELS) == {
        "mcc": pytest.approx(-1 / 3)
    }


def test_compute_metrics_regression():
    task = FakeTask("stsb", ("pearson", "spearman"), is_regression=True)
    preds = np.array([[1.0], [2.0], [5.0]])  # (N, 1) regression output
    got = compute_metrics(task, preds, [1.0, 2.0, 3.0])
    assert got["pearson"] == pytest.approx(12 / np.sqrt(156))
    assert got["spearman"] == pytest.approx(1.0)


def test_compute_metrics_unknown_metric():
    with pytest.raises(UserError, match="unknown metric"):
        compute_metrics(FakeTask("x", ("bleu",)), [1], [1])


def test_compute_metrics_with_real_task_specs():
    data = pytest.importorskip("tinybert.data")
    if not hasattr(data, "get_task"):
        pytest.skip("tinybert.data.get_task is not available yet")
    for name in ("sst2", "mrpc", "cola", "stsb"):
        task = data.get_task(name)
        got = compute_metrics(task, [1, 0, 1, 1], [1, 1, 1, 0])
        assert list(got) == list(task.metrics)
        assert task.main_metric in got
