"""`tinybert.benchmark`: speed.json from the task's own dev sentences, torch and ONNX rows, refusals;
the fastest backend per batch size and what `predict --backend fastest` and `export` make of it.

No timing is asserted (CI machines vary); only that every figure is a positive, finite rate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tinybert.benchmark import (
    SPEED_FILE,
    SpeedOptions,
    machine_description,
    measure_speed,
    run_benchmark,
    summary_lines,
)
from tinybert.cli import main
from tinybert.config import BenchmarkConfig, Config, load_config
from tinybert.data.tasks import get_task
from tinybert.errors import UserError
from tinybert.export.onnx import export_model
from tinybert.export.recommend import int8_accuracy, recommend, recommendation_lines
from tinybert.export.runtime import INT8_FILE, OPTIMIZED_FILE
from tinybert.predict import Predictor

from .conftest import sst2_rows, write_sst2, write_tiny_bert
from .test_clue import write_jsonl, write_zh_vocab
from .test_clue_train import ner_rows
from .test_export import make_classifier

QUICK = SpeedOptions(batch_sizes=(1, 4), max_sentences=16, repeats=1, bf16=False)
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
    "fastest",
    "int8_accuracy",
}


def sst2_config(data_dir: Path) -> Config:
    return load_config([], [f"task.data_dir={data_dir}", "task.max_seq_length=32"])


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> tuple[Path, Config]:
    """(a tiny classifier with a head, its SST-2 config with 24 dev rows)."""
    root = tmp_path_factory.mktemp("speed")
    data = write_sst2(root / "SST-2", n_train=8, n_dev=24)
    return make_classifier(root / "model"), sst2_config(data)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Config]:
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
    assert len(summary_lines(result)) == 5  # 2 rows, the fastest at each size, the machine


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
    cfg = load_config(
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
    assert SpeedOptions.from_config(bench) == SpeedOptions((8,), 10, 3, 2, bf16=None)
    assert SpeedOptions.from_config(BenchmarkConfig()) == SpeedOptions()


def test_model_without_head_refused(tmp_path, sst2_dir):
    encoder = write_tiny_bert(tmp_path / "encoder")  # a bare BertModel: no classifier
    with pytest.raises(UserError, match="no trained task head"):
        measure_speed(sst2_config(sst2_dir), encoder, QUICK)
    assert not (encoder / SPEED_FILE).exists()


def test_machine_description_is_one_line():
    line = machine_description()
    assert "\n" not in line and " cores" in line


# ---------------------------------------------------------------------------------------------
# torch bf16, the fastest backend, and the recommendation


def check_fastest(result: dict) -> None:
    """ "fastest" names, per batch size, the row with the most sequences/s."""
    sizes = sorted({r["batch_size"] for r in result["results"]})
    assert [f["batch_size"] for f in result["fastest"]] == sizes
    for best in result["fastest"]:
        rows = [r for r in result["results"] if r["batch_size"] == best["batch_size"]]
        top = max(rows, key=lambda r: r["sequences_per_s"])
        assert (best["backend"], best["precision"]) == (top["backend"], top["precision"])
        assert best["sequences_per_s"] == top["sequences_per_s"]
        fp32 = next(r for r in rows if (r["backend"], r["precision"]) == ("torch", "fp32"))
        assert best["vs_torch_fp32"] == pytest.approx(
            top["sequences_per_s"] / fp32["sequences_per_s"], abs=0.01
        )
        assert best["vs_torch_fp32"] >= 1


def test_bf16_rows_and_fastest(exported):
    model_dir, cfg = exported
    options = SpeedOptions(batch_sizes=(1, 4), max_sentences=16, repeats=1, bf16=True)
    result, _ = run_benchmark(cfg, model_dir, options)
    got = [(r["backend"], r["precision"]) for r in result["results"]]
    assert got == [
        ("torch", "fp32"), ("torch", "fp32"), ("torch", "bf16"), ("torch", "bf16"),
        ("onnx", "fp32"), ("onnx", "fp32"), ("onnx", "int8"), ("onnx", "int8"),
    ]  # fmt: skip
    check_rates(result)
    check_fastest(result)
    assert result["int8_accuracy"] is None  # exported without a task: no dev metrics
    lines = summary_lines(result)
    assert sum(line.startswith("fastest at batch") for line in lines) == 2
    rec = recommend(model_dir, 3)  # nearest measured size: 4
    assert rec is not None and rec.batch_size == 4
    assert (rec.backend, rec.precision) == (
        result["fastest"][1]["backend"],
        result["fastest"][1]["precision"],
    )
    assert "fastest at batch 4 here" in rec.line()


def test_bf16_off_where_the_cpu_lacks_it(classifier, monkeypatch):
    model_dir, cfg = classifier
    monkeypatch.setenv("TINYBERT_AUTO_PRECISION", "fp32")  # what `auto` says on an AVX2 CPU
    options = SpeedOptions(batch_sizes=(2,), max_sentences=4, repeats=1)
    result = measure_speed(cfg, model_dir, options)
    assert [r["precision"] for r in result["results"]] == ["fp32"]
    monkeypatch.setenv("TINYBERT_AUTO_PRECISION", "bf16")
    result = measure_speed(cfg, model_dir, options)
    assert [r["precision"] for r in result["results"]] == ["fp32", "bf16"]


def test_predict_bf16_matches_fp32(classifier):
    model_dir, _ = classifier
    texts: list = [s for s, _ in sst2_rows(10, seed=3)]
    fp32 = Predictor(model_dir, backend="torch", precision="fp32").logits(texts, 4, 32)
    bf16 = Predictor(model_dir, backend="torch", precision="bf16").logits(texts, 4, 32)
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert torch.allclose(torch.softmax(bf16, -1), torch.softmax(fp32, -1), atol=0.02)


def write_speed(model_dir: Path, rows: list[tuple[str, str, int, float]], int8=None) -> None:
    """A speed.json as `tinybert benchmark` writes it, with the given rows."""
    from tinybert.export.recommend import fastest_rows

    results = [
        {"backend": b, "precision": p, "batch_size": n, "sequences_per_s": v, "file": None}
        for b, p, n, v in rows
    ]
    result = {"machine": "test CPU", "measured_at": "2026-12-03T10:00:00+00:00",
              "results": results, "fastest": fastest_rows(results), "int8_accuracy": int8}  # fmt: skip
    (model_dir / SPEED_FILE).write_text(json.dumps(result))


ROWS = [
    ("torch", "fp32", 1, 100.0), ("torch", "bf16", 1, 150.0), ("onnx", "int8", 1, 300.0),
    ("torch", "fp32", 32, 400.0), ("torch", "bf16", 32, 900.0), ("onnx", "int8", 32, 700.0),
]  # fmt: skip
INT8 = {"metric": "accuracy", "fp32": 0.8, "int8": 0.7954, "delta_points": -0.46}


def test_recommend_reads_speed_json(tmp_path):
    assert recommend(tmp_path, 32) is None  # no benchmark yet
    assert "tinybert benchmark" in recommendation_lines(tmp_path)[0]
    write_speed(tmp_path, ROWS, INT8)
    rec = recommend(tmp_path, 64)
    assert rec is not None and (rec.batch_size, rec.backend, rec.precision) == (32, "torch", "bf16")
    assert rec.vs_torch_fp32 == 2.25
    assert "int8 changes dev accuracy by -0.46 points" in rec.line()
    assert recommend(tmp_path, 2).precision == "int8"  # type: ignore[union-attr]
    only_onnx = recommend(tmp_path, 64, ("onnx",))
    assert only_onnx is not None and only_onnx.precision == "int8"
    lines = "\n".join(recommendation_lines(tmp_path))
    assert "batch 1: onnx int8, 300.0 sequences/s (3.00x torch fp32)" in lines
    assert "batch 32: torch bf16, 900.0 sequences/s (2.25x torch fp32)" in lines
    (tmp_path / SPEED_FILE).write_text("{not json")
    assert recommend(tmp_path, 32) is None  # a damaged file loses the advice, nothing else


def test_int8_accuracy_from_export_json(tmp_path):
    assert int8_accuracy(tmp_path) is None
    report = {"main_metric": "accuracy",
              "metrics": {"pytorch": {"accuracy": 0.8}, INT8_FILE: {"accuracy": 0.7954}}}  # fmt: skip
    (tmp_path / "export.json").write_text(json.dumps(report))
    assert int8_accuracy(tmp_path) == INT8


def test_predict_backend_fastest(exported, tmp_path, capsys):
    model_dir, _ = exported
    path = tmp_path / "in.txt"
    path.write_text("a good film\na bad film\n")
    args = ["predict", str(path), f"--model={model_dir}", "--no-progress", "--backend=fastest"]
    (model_dir / SPEED_FILE).unlink(missing_ok=True)
    assert main(args) == 2
    assert "tinybert benchmark" in capsys.readouterr().err
    write_speed(model_dir, ROWS, INT8)
    try:
        for size, chosen in (("1", "onnx int8"), ("64", "torch bf16")):
            assert main([*args, f"--batch-size={size}"]) == 0
            captured = capsys.readouterr()
            assert len(captured.out.splitlines()) == 2
            assert "--backend fastest: fastest at batch" in captured.err
            assert chosen in captured.err and "-0.46 points" in captured.err
        # an export folder without PyTorch weights: the fastest ONNX row
        assert main([*args[:2], f"--model={model_dir / 'onnx'}", *args[3:]]) == 0
        assert "onnx int8" in capsys.readouterr().err
        assert main([*args, "--precision=fp32"]) == 2
        assert "chooses the precision too" in capsys.readouterr().err
    finally:
        (model_dir / SPEED_FILE).unlink()


def test_export_prints_the_recommendation(tmp_path, capsys):
    model_dir = make_classifier(tmp_path / "model")
    assert main(["export", f"--model={model_dir}"]) == 0
    assert "run `tinybert benchmark" in capsys.readouterr().out
    write_speed(model_dir, ROWS, INT8)
    assert main(["export", f"--model={model_dir}"]) == 0
    out = capsys.readouterr().out
    assert "fastest on test CPU (speed.json, 2026-12-03):" in out
    assert "batch 32: torch bf16" in out and "int8 changes dev accuracy by -0.46" in out
