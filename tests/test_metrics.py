"""GLUE metrics against values worked out by hand (the arithmetic is in the comments), and
against scikit-learn and SciPy on many random inputs."""

import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics
from sklearn.exceptions import UndefinedMetricWarning

from tinybert.data import get_task
from tinybert.data.metrics import (
    _average_ranks,
    acc_and_f1,
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
    for name in ("sst2", "mrpc", "cola", "stsb"):
        task = get_task(name)
        got = compute_metrics(task, [1, 0, 1, 1], [1, 1, 1, 0])
        assert list(got) == list(task.metrics)
        assert task.main_metric in got


# --------------------------------------------------------------------------- scikit-learn, SciPy

TOL = 1e-12
N_CASES = 200


def quietly(fn, *args, **kwargs) -> float:
    """A reference value, its warnings about degenerate inputs silenced (tested separately)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(*args, **kwargs))


def random_classes(rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(preds, labels) over k classes, 1-300 examples, class frequencies from uniform to very
    skewed, so one-class and empty-class cases turn up too."""
    n = int(rng.integers(1, 301))
    probs = rng.dirichlet(np.full(k, rng.choice([0.2, 1.0, 10.0])))
    return rng.choice(k, n, p=probs), rng.choice(k, n, p=probs)


def test_accuracy_f1_and_acc_and_f1_equal_sklearn():
    rng = np.random.default_rng(0)
    for case in range(N_CASES):
        p, y = random_classes(rng, 2)
        acc = sklearn.metrics.accuracy_score(y, p)
        # zero_division=0.0: sklearn's value where F1 is undefined, without its warning
        want_f1 = sklearn.metrics.f1_score(y, p, pos_label=1, zero_division=0.0)
        assert accuracy(p, y) == pytest.approx(acc, abs=TOL), case
        assert f1(p, y) == pytest.approx(want_f1, abs=TOL), case
        assert acc_and_f1(p, y) == pytest.approx((acc + want_f1) / 2, abs=TOL), case
    p, y = random_classes(rng, 5)  # accuracy is for any number of classes
    assert accuracy(p, y) == pytest.approx(sklearn.metrics.accuracy_score(y, p), abs=TOL)


def test_f1_without_positives_is_zero_where_sklearn_warns():
    for p, y in (([0, 0, 0], [0, 0, 0]), ([0], [0])):
        with pytest.warns(UndefinedMetricWarning):
            assert sklearn.metrics.f1_score(y, p) == 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # ours is silent
            assert f1(p, y) == 0.0
            assert acc_and_f1(p, y) == 0.5


@pytest.mark.parametrize("k", [2, 3, 6])
def test_matthews_equals_sklearn(k):
    rng = np.random.default_rng(k)
    names = rng.choice(np.arange(-50, 50), k, replace=False)  # any class ids, not just 0..k-1
    for case in range(N_CASES):
        p, y = random_classes(rng, k)
        p, y = names[p], names[y]
        want = quietly(sklearn.metrics.matthews_corrcoef, y, p)
        assert matthews_corrcoef(p, y) == pytest.approx(want, abs=TOL), (k, case)


def test_matthews_undefined_is_zero_like_sklearn():
    for p, y in (([1, 1, 1, 1], [1, 0, 1, 0]), ([1, 0, 1, 0], [0, 0, 0, 0]), ([2, 2], [2, 2])):
        assert quietly(sklearn.metrics.matthews_corrcoef, y, p) == 0.0
        assert matthews_corrcoef(p, y) == 0.0


CORRELATIONS = ((pearson, scipy.stats.pearsonr), (spearman, scipy.stats.spearmanr))


def scipy_r(fn, preds, labels) -> float:
    """SciPy's correlation coefficient, its warnings about constant inputs silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(preds, labels).statistic)


def random_scores(rng: np.random.Generator, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    """(preds, labels) of 2-300 values, correlated to a random degree; with `ties`, rounded to
    multiples of 0.2 (as STS-B's labels are), so tied ranks are common, and now and then every
    prediction the same (a collapsed model)."""
    n = int(rng.integers(2, 301))
    y = rng.normal(size=n)
    p = rng.uniform(-1, 1) * y + rng.uniform(0, 2) * rng.normal(size=n)
    if ties:
        y = np.round(y * rng.integers(1, 4)) / 5
        p = np.round(p * rng.integers(1, 4)) / 5
        if rng.random() < 0.1:
            p = np.full(n, p[0])
    return p, y


@pytest.mark.parametrize("ties", [False, True])
def test_pearson_and_spearman_equal_scipy(ties):
    rng = np.random.default_rng(int(ties))
    constant = 0
    for case in range(N_CASES):
        p, y = random_scores(rng, ties)
        for ours, theirs in CORRELATIONS:
            want = scipy_r(theirs, p, y)
            if np.isnan(want):  # SciPy: undefined for a constant input; ours is 0.0
                assert np.ptp(p) == 0 or np.ptp(y) == 0, case
                assert ours(p, y) == 0.0
                constant += 1
            else:
                assert ours(p, y) == pytest.approx(want, abs=TOL), (ours.__name__, case)
    assert constant > 0 if ties else constant == 0  # the difference was exercised


@pytest.mark.parametrize(
    ("p", "y"),
    [
        ([3.0, 3.0, 3.0], [1.0, 2.0, 3.0]),
        ([0.4, 0.4, 0.4], [0.1, 0.7, 0.3]),  # mean(p) - 0.4 is 5.6e-17, not 0: still exactly 0.0
    ],
)
def test_constant_input_is_zero_where_scipy_warns_and_gives_nan(p, y):
    for ours, theirs in CORRELATIONS:
        with pytest.warns(scipy.stats.ConstantInputWarning):
            assert np.isnan(theirs(p, y).statistic)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert ours(p, y) == 0.0
            assert ours(y, p) == 0.0


def test_nan_in_nan_out_like_scipy():
    p, y = [1.0, np.nan, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0]
    for ours, theirs in CORRELATIONS:
        assert np.isnan(scipy_r(theirs, p, y))
        assert np.isnan(ours(p, y)) and np.isnan(ours(y, p))


def test_one_example_is_zero_where_scipy_refuses_or_gives_nan():
    with pytest.raises(ValueError, match="at least 2"):
        scipy.stats.pearsonr([1.0], [2.0])
    assert np.isnan(scipy_r(scipy.stats.spearmanr, [1.0], [2.0]))
    assert pearson([1.0], [2.0]) == 0.0 and spearman([1.0], [2.0]) == 0.0
