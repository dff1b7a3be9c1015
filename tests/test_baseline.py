"""The trivial baseline of a dev set (tinybert.data.baseline), hand-computed for each kind of
metric, the verdict on a model against it, kept-over-baseline arithmetic, and `tinybert
evaluate`'s JSON holding both."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tinybert.cli import main
from tinybert.data import baseline as bl
from tinybert.data.base import TaskSpec
from tinybert.data.tasks import get_task
from tinybert.data.tokenization import TaskDataset
from tinybert.report import files

from .conftest import TINY, majority_rate, write_sst2, write_vocab

BINARY = TaskSpec(
    "binary", ("0", "1"), False, ("accuracy", "f1", "acc_and_f1", "mcc"), "acc_and_f1",
    "train.tsv", {"dev": "dev.tsv"},
)  # fmt: skip


def dataset(labels: list, tag_ids: list[list[int]] | None = None, spans=None) -> TaskDataset:
    """A TaskDataset holding only what baselines read: labels (and a token task's tags/spans)."""
    lengths = [len(t) for t in tag_ids] if tag_ids else [3] * len(labels)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    return TaskDataset(
        ids=np.zeros(n, np.int32),
        type_ids=np.zeros(n, np.int8),
        offsets=offsets,
        labels=labels,
        lengths=lengths,
        tag_ids=np.array([t for row in tag_ids for t in row], np.int16) if tag_ids else None,
        gold_spans=spans,
    )


# ---------------------------------------------------------------------------------------------
# the baseline of each kind of task


def test_majority_class_ties_go_to_the_lowest_id() -> None:
    assert bl.majority_class([2, 2, 1, 0, 1], 3) == 1
    assert bl.majority_class([1, 0], 2) == 0
    assert bl.majority_class([2, 2], 4) == 2


def test_majority_positive_class_scores_f1_but_no_mcc() -> None:
    """7 of 10 rows are class 1 (MRPC-like): always 1 has accuracy 0.7, F1 14/17 (TP 7,
    FP 3, FN 0), acc_and_f1 their mean, MCC 0."""
    scores = bl.sequence_baseline(BINARY, [1] * 7 + [0] * 3)
    assert scores["accuracy"] == pytest.approx(0.7)
    assert scores["f1"] == pytest.approx(14 / 17)
    assert scores["acc_and_f1"] == pytest.approx((0.7 + 14 / 17) / 2)
    assert scores["mcc"] == 0.0


def test_majority_negative_class_scores_no_f1() -> None:
    scores = bl.sequence_baseline(BINARY, [0, 0, 0, 1])  # always 0: no positive predicted
    assert scores == {"accuracy": 0.75, "f1": 0.0, "acc_and_f1": 0.375, "mcc": 0.0}


def test_mrpc_dev_proportions_give_the_known_baseline() -> None:
    """MRPC's dev set: 279 paraphrases of 408 pairs -> accuracy 0.684, F1 0.812."""
    scores = bl.sequence_baseline(get_task("mrpc"), [1] * 279 + [0] * 129)
    assert scores["accuracy"] == pytest.approx(279 / 408)
    assert scores["f1"] == pytest.approx(2 * 279 / (2 * 279 + 129))
    assert round(scores["f1"], 2) == 0.81


def test_regression_baseline_is_the_constant_mean() -> None:
    stsb = get_task("stsb")
    data = dataset([0.0, 1.5, 4.0, 4.5])
    assert bl.dataset_baseline(stsb, data) == {"pearson": 0.0, "spearman": 0.0}
    assert bl.describe(stsb, data) == "always the mean score 2.5000"


def test_ner_baseline_predicts_no_entity() -> None:
    """Two rows; tags 0 ("O"), 1, 2; -100 is [CLS]/[SEP]. 4 of the 6 scored tokens are "O"."""
    cluener = get_task("cluener")
    assert cluener.labels[0] == "O"
    data = dataset(
        [0, 0],
        tag_ids=[[-100, 0, 1, 2, -100], [-100, 0, 0, 0, -100]],
        spans=[frozenset({("name", 1, 2)}), frozenset({("address", 0, 3)})],
    )
    scores = bl.dataset_baseline(cluener, data)
    assert scores == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "f1/address": 0.0,
        "f1/name": 0.0,
        "token_accuracy": pytest.approx(4 / 6),
    }
    assert bl.describe(cluener, data) == "no entities"


def test_split_baselines_are_keyed_like_the_metrics() -> None:
    mnli = get_task("mnli")
    splits = {"dev_matched": dataset([0, 1, 1]), "dev_mismatched": dataset([2, 2, 0, 0])}
    assert bl.split_baselines(mnli, splits) == {
        "dev_matched/accuracy": pytest.approx(2 / 3),
        "dev_mismatched/accuracy": 0.5,  # a tie: class 0, the lowest id
    }
    assert bl.split_baselines(mnli, {"dev": dataset([1, 1, 0])}) == {
        "accuracy": pytest.approx(2 / 3)
    }


# ---------------------------------------------------------------------------------------------
# the verdict


def test_a_model_must_beat_the_baseline_by_the_margin() -> None:
    assert bl.margin("accuracy") == bl.TRIVIAL_MARGIN == 0.01
    assert bl.margin("dev_matched/mcc") == bl.margin("pearson") == bl.CORRELATION_MARGIN == 0.02
    assert not bl.is_trivial("accuracy", 0.69, 0.68)  # exactly one point better
    assert bl.is_trivial("accuracy", 0.689, 0.68)
    assert bl.is_trivial("accuracy", 0.60, 0.68)  # below the baseline
    assert bl.is_trivial("mcc", 0.019, 0.0) and not bl.is_trivial("mcc", 0.02, 0.0)
    assert bl.is_trivial("pearson", math.nan, 0.0)


def test_verdict_names_the_metric_baseline_and_a_single_class() -> None:
    splits = {"dev": dataset([1] * 7 + [0] * 3)}
    base = bl.split_baselines(BINARY, splits)
    constant = {**base, "n_examples": 10, "predicted_classes": 1}
    verdict = bl.judge(BINARY, splits, "acc_and_f1", constant, base)
    assert verdict == {
        "metric": "acc_and_f1",
        "value": base["acc_and_f1"],
        "baseline": base["acc_and_f1"],
        "margin": 0.01,
        "trivial": True,
        "baseline_is": "always '1' (the majority class)",
        "single_class": True,
    }
    good = {**constant, "acc_and_f1": base["acc_and_f1"] + 0.1, "predicted_classes": 2}
    verdict = bl.judge(BINARY, splits, "acc_and_f1", good, base)
    assert verdict["trivial"] is False and verdict["single_class"] is False


def test_kept_over_the_baseline() -> None:
    """(student - baseline) / (teacher - baseline), beside the plain student / teacher."""
    assert files.kept_over_baseline(0.9, 0.8, 0.5) == pytest.approx(0.75)
    assert files.score_ratio(0.9, 0.8) == pytest.approx(0.8 / 0.9)
    assert files.kept_over_baseline(0.9, 0.5, 0.5) == 0.0  # a student at the baseline
    assert files.kept_over_baseline(0.9, 0.4, 0.5) == pytest.approx(-0.25)
    assert files.kept_over_baseline(0.5, 0.6, 0.5) is None  # the teacher gains nothing
    assert files.score_ratio(0.0, 0.3) is None


def test_trivial_sentence() -> None:
    verdict = {"metric": "accuracy", "value": 0.5, "baseline": 0.5, "margin": 0.01}
    verdict |= {"trivial": True, "baseline_is": "always '0' (the majority class)"}
    assert files.trivial_sentence("student", {**verdict, "single_class": True}) == (
        "the student is no better than the trivial baseline: dev accuracy 0.5000 against "
        "0.5000 for always '0' (the majority class), and must beat it by at least 0.01; it "
        "predicts one class for every dev row"
    )
    assert files.is_trivial(verdict) and not files.is_trivial({"trivial": "yes"})


def test_result_keys_match_their_writer() -> None:
    from tinybert import evaluate

    assert files.BASELINE_KEY == evaluate.BASELINE_KEY
    assert files.VERDICT_KEY == evaluate.VERDICT_KEY


# ---------------------------------------------------------------------------------------------
# tinybert evaluate


def constant_classifier(directory: Path, answer: int) -> Path:
    """A tiny SST-2 classifier that answers `answer` for every input (zero weights, a bias)."""
    from tinybert.model import BertConfig, BertForSequenceClassification, save_model

    write_vocab(directory)
    n_vocab = len((directory / "vocab.txt").read_text().split())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=n_vocab, num_labels=2, id2label=("0", "1"), **TINY)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.eye(2)[answer])  # logit 1 for `answer`
    save_model(model, directory, tokenizer_dir=directory)
    return directory


def test_evaluate_json_holds_the_baseline_and_calls_a_constant_model_trivial(
    tmp_path: Path, capsys
) -> None:
    sst2 = write_sst2(tmp_path / "SST-2", n_dev=15)  # 8 of class 0, 7 of class 1
    model = constant_classifier(tmp_path / "model", answer=1)
    out = tmp_path / "eval.json"
    args = [f"task.data_dir={sst2}", "task.max_seq_length=16", f"--model={model}"]
    assert main(["evaluate", *args, f"--output={out}"]) == 0
    results = json.loads(out.read_text())
    assert (
        results["baseline"] == {"accuracy": majority_rate(sst2 / "dev.tsv")} == {"accuracy": 8 / 15}
    )
    assert results["accuracy"] == pytest.approx(7 / 15)  # always 1: below the baseline
    assert results["verdict"] == {
        "metric": "accuracy",
        "value": results["accuracy"],
        "baseline": 8 / 15,
        "margin": 0.01,
        "trivial": True,
        "baseline_is": "always '0' (the majority class)",
        "single_class": True,
    }
    err = capsys.readouterr().err
    assert "warning: the model is no better than the trivial baseline" in err
    # the count and metric readers of the report and the cards leave the new entries out
    assert files.metric_values(results) == {"accuracy": results["accuracy"]}
