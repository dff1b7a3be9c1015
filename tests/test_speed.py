"""`tinybert.speed`: speed.json from the task's own dev sentences, torch and ONNX rows, refusals.

No timing is asserted (CI machines vary); only that every figure is a positive, finite rate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tinybert.config import BenchmarkConfig, RunConfig, load_run_config
from tinybert.data.tasks import get_task
from tinybert.errors import UserError
from tinybert.export.onnx import export_model
from tinybert.export.runtime import INT8_FILE, OPTIMIZED_FILE
from tinybert.speed import (
    SPEED_FILE,
    SpeedOptions,
    machine_description,
    measure_speed,
    run_benchmark,
    summary_lines,
)

from .conftest import write_sst2, write_tiny_bert
from .test_clue import write_jsonl, write_zh_vocab
from .test_clue_train import ner_rows
from .test_export import make_classifier

QUICK = SpeedOptions(batch_sizes=(1, 4), max_sentences=16, repeats=1)
KEYS = {
    "model",
    "task",
    "machine",
    "threads",
    "sequences",
    "max_seq_length",
    "mean_tokens",
    "measured_at",
    "results",
}


def sst2_config(data_dir: Path) -> RunConfig:
    return load_run_config([], [f"task.data_dir={data_dir}", "task.max_seq_length=32"])


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> tuple[Path, RunConfig]:
    """(a tiny classifier with a head, its SST-2 config with 24 dev rows)."""
    root = tmp_path_factory.mktemp("speed")
    data = write_sst2(root / "SST-2", n_train=8, n_dev=24)
    return make_classifier(root / "model"), sst2_config(data)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, RunConfig]:
    """The same kind of classifier with an export in DIR/onnx (fp32, optimised, int8)."""
    root = tmp_path_factory.mktemp("speed-onnx")
    data = write_sst2(root / "SST-2", n_train=8, n_dev=24)
    model_dir = make_classifier(root / "model")
    export_model(model_dir, model_dir / "onnx", optimize=True, int8=True)
    return model_dir, sst2_config(data)


def check_rates(result: dict) -> None:
    for row in result["results"]:
        assert math.isfinite(row["sequences_per_s"]) and row["sequences_per_s"] > 0


def test_torch_rows_and_schema(classifier):
    model_dir, cfg = classifier
    result, path = run_benchmark(cfg, model_dir, QUICK)
    assert path == model_dir / SPEED_FILE
    assert json.loads(path.read_text()) == result
    assert not list(model_dir.glob("*.tmp"))
    assert set(result) == KEYS
    assert result["task"] == "sst2" and result["model"] == str(model_dir)
    assert result["sequences"] == 16  # max_sentences of the 24 dev rows
    assert result["max_seq_length"] == 32
    assert 3 <= result["mean_tokens"] <= 32  # [CLS] + 2-9 words + [SEP]
    assert result["threads"] == torch.get_num_threads()
    assert [(r["backend"], r["precision"], r["batch_size"]) for r in result["results"]] == [
        ("torch", "fp32", 1),
        ("torch", "fp32", 4),
    ]
    assert all(r["file"] is None for r in result["results"])
    check_rates(result)
    assert len(summary_lines(result)) == 3


def test_fewer_dev_rows_than_asked(classifier):
    model_dir, cfg = classifier
    options = SpeedOptions(batch_sizes=(32,), max_sentences=100, repeats=1)
    result = measure_speed(cfg, model_dir, options)
    assert result["sequences"] == 24  # the whole dev split; one short batch


def test_threads_set_then_restored(classifier):
    model_dir, cfg = classifier
    before = torch.get_num_threads()
    options = SpeedOptions(batch_sizes=(2,), max_sentences=4, repeats=1, threads=1)
    assert measure_speed(cfg, model_dir, options)["threads"] == 1
    assert torch.get_num_threads() == before


def test_onnx_rows_with_an_export(exported):
    model_dir, cfg = exported
    rows: list[dict] = []
    result, _ = run_benchmark(cfg, model_dir, QUICK, on_row=rows.append)
    assert rows == result["results"]
    got = [(r["backend"], r["precision"], r["batch_size"], r["file"]) for r in rows]
    assert got == [
        ("torch", "fp32", 1, None),
        ("torch", "fp32", 4, None),
        ("onnx", "fp32", 1, f"onnx/{OPTIMIZED_FILE}"),
        ("onnx", "fp32", 4, f"onnx/{OPTIMIZED_FILE}"),
        ("onnx", "int8", 1, f"onnx/{INT8_FILE}"),
        ("onnx", "int8", 4, f"onnx/{INT8_FILE}"),
    ]
    check_rates(result)


def test_token_task(tmp_path):
    """CLUENER: a token-classification head times the same way (logits per token)."""
    labels = get_task("cluener").labels
    model_dir = tmp_path / "ner"
    write_zh_vocab(model_dir)
    make_classifier(model_dir, head="token", labels=labels)
    write_jsonl(tmp_path / "cluener/dev.json", ner_rows(6, seed=1))
    cfg = load_run_config(
        [], ["task.name=cluener", f"task.data_dir={tmp_path / 'cluener'}", "task.max_seq_length=32"]
    )
    result = measure_speed(cfg, model_dir, SpeedOptions(batch_sizes=(1, 4), repeats=1))
    assert result["task"] == "cluener" and result["sequences"] == 6
    assert [r["batch_size"] for r in result["results"]] == [1, 4]
    check_rates(result)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_sizes": (1, 0)}, "batch_sizes"),
        ({"batch_sizes": ()}, "batch_sizes"),
        ({"max_sentences": 0}, "max_sentences"),
        ({"repeats": 0}, "repeats"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_options_refused(kwargs, match):
    with pytest.raises(UserError, match=match):
        SpeedOptions(**kwargs)


def test_options_from_config():
    bench = BenchmarkConfig(batch_sizes=(8,), max_sentences=10, repeats=3, threads=2)
    assert SpeedOptions.from_config(bench) == SpeedOptions((8,), 10, 3, 2)
    assert SpeedOptions.from_config(BenchmarkConfig()) == SpeedOptions()


def test_model_without_head_refused(tmp_path, sst2_dir):
    encoder = write_tiny_bert(tmp_path / "encoder")  # a bare BertModel: no classifier
    with pytest.raises(UserError, match="no trained task head"):
        measure_speed(sst2_config(sst2_dir), encoder, QUICK)
    assert not (encoder / SPEED_FILE).exists()


def test_machine_description_is_one_line():
    line = machine_description()
    assert "\n" not in line and " cores" in line
