"""ONNX export: parity with PyTorch, dynamic axes, int8 and optimised files, ONNX evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tinybert.cli import main
from tinybert.errors import UserError
from tinybert.export import onnx as export_onnx
from tinybert.export.onnx import export_model, generated_batches, max_logit_diff
from tinybert.export.runtime import FP32_FILE, INT8_FILE, OPTIMIZED_FILE, OnnxLogits, find_onnx
from tinybert.model import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    load_model,
    save_model,
)
from tinybert.train.inference import torch_logits_fn

from .conftest import TINY, majority_rate, write_sst2, write_tiny_bert, write_vocab


def make_classifier(
    directory: Path, head: str = "sequence", labels=("0", "1"), **config_keys
) -> Path:
    """A random tiny classifier saved like a fine-tuned model (config, weights, tokenizer)."""
    write_vocab(directory)
    n_vocab = len((directory / "vocab.txt").read_text().split())
    torch.manual_seed(0)
    cls = BertForSequenceClassification if head == "sequence" else BertForTokenClassification
    shape = {**TINY, **config_keys}
    config = BertConfig(vocab_size=n_vocab, num_labels=len(labels), id2label=labels, **shape)
    save_model(cls(config), directory, tokenizer_dir=directory)
    return directory


def sst2_data(directory: Path) -> Path:
    """The keyword SST-2 fixture with 24 dev rows (the label decides a sentiment word)."""
    return write_sst2(directory, n_dev=24)


def train_classifier(root: Path) -> Path:
    """A tiny classifier fine-tuned on `sst2_data` (96 steps; dev accuracy 0.92-0.96 with
    seeds 1-5 and the default), so that metrics through ONNX can be checked against a model
    that learned something, not against chance."""
    args = [
        f"model={write_tiny_bert(root / 'encoder')}",
        f"output_dir={root / 'run'}",
        f"task.data_dir={sst2_data(root / 'SST-2')}",
        "task.max_seq_length=32",
        "finetune.epochs=16",
        "finetune.batch_size=8",
        "finetune.lr=3e-3",
    ]
    assert main(["finetune", *args]) == 0
    return root / "run/teacher/best"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """(trained model dir, export folder with model.onnx, model_optimized.onnx, model_int8.onnx)."""
    root = tmp_path_factory.mktemp("export")
    model_dir = train_classifier(root)
    export_model(model_dir, root / "onnx", optimize=True, int8=True)
    return model_dir, root / "onnx"


def test_export_writes_a_self_contained_folder(exported):
    model_dir, out = exported
    names = {p.name for p in out.iterdir()}
    assert {FP32_FILE, OPTIMIZED_FILE, INT8_FILE, "config.json", "vocab.txt"} <= names
    assert {"tokenizer_config.json", "export.json"} <= names
    assert not any(n.endswith(".partial") for n in names)
    assert json.loads((out / "config.json").read_text()) == json.loads(
        (model_dir / "config.json").read_text()
    )
    report = json.loads((out / "export.json").read_text())
    assert report["max_diff"][FP32_FILE] <= 1e-4
    assert report["max_diff"][OPTIMIZED_FILE] <= 1e-4
    assert report["files"][FP32_FILE] > report["files"][INT8_FILE] > 0
    # A sequence head's last layer computes the [CLS] row alone: not the pattern ORT fuses.
    assert report["fused"].get("Attention") == TINY["num_hidden_layers"] - 1
    assert "SkipLayerNormalization" not in report["fused"]  # slower than Add + LayerNorm


def test_onnx_graph_interface(exported):
    _, out = exported
    import onnx

    graph = onnx.load(out / FP32_FILE)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    inputs = {i.name: i for i in graph.graph.input}
    assert list(inputs) == ["input_ids", "attention_mask", "token_type_ids"]
    for i in inputs.values():
        assert i.type.tensor_type.elem_type == onnx.TensorProto.INT64
        dims = i.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"]  # dynamic, not fixed
    assert [o.name for o in graph.graph.output] == ["logits"]


def test_dynamic_axes_parity(exported):
    """Batch and sequence sizes the export never saw (it traced batch 2, length 8)."""
    model_dir, out = exported
    model, _ = load_model(model_dir)
    reference = torch_logits_fn(model)
    g = torch.Generator().manual_seed(3)
    for batch, length in ((1, 1), (5, 23), (7, 64)):
        lengths = torch.randint(1, length + 1, (batch,), generator=g)
        lengths[0] = length
        mask = (torch.arange(length)[None] < lengths[:, None]).long()
        b = {
            "input_ids": torch.randint(5, 40, (batch, length), generator=g) * mask,
            "attention_mask": mask,
            "token_type_ids": torch.zeros(batch, length, dtype=torch.long),
        }
        with torch.no_grad():
            want = reference(b)
        for name in (FP32_FILE, OPTIMIZED_FILE):
            got = OnnxLogits(out / name)(b)
            assert got.shape == (batch, 2)
            assert np.abs(got - want.numpy()).max() <= 1e-4, (name, batch, length)


def test_int8_exists_and_runs(exported):
    model_dir, out = exported
    run = OnnxLogits(find_onnx(out, "int8"))
    assert run.path.name == INT8_FILE
    batches = generated_batches(40, 64)
    logits = [run(b) for b in batches]
    assert all(np.isfinite(x).all() and x.shape == (len(b["input_ids"]), 2) for x, b in zip(logits, batches, strict=True))  # fmt: skip
    assert find_onnx(out, "fp32").name == OPTIMIZED_FILE  # fp32 prefers the fused graph


def test_onnx_evaluate_equals_pytorch(exported, tmp_path):
    """Same task reader, batching and metrics: identical numbers from both backends (fp32)."""
    model_dir, out = exported
    data = sst2_data(tmp_path / "SST-2")
    args = [f"task.data_dir={data}", "task.max_seq_length=32", "finetune.eval_batch_size=5"]
    results = {}
    for name, extra in (
        ("torch", [f"--model={model_dir}"]),
        ("onnx", [f"--model={out}"]),
        ("onnx_file", [f"--model={out}", f"--onnx={out / FP32_FILE}"]),
        ("int8", [f"--model={out}", "--precision=int8"]),
    ):
        path = tmp_path / f"{name}.json"
        assert main(["evaluate", *extra, f"--output={path}", *args]) == 0
        results[name] = json.loads(path.read_text())
    assert results["onnx"]["backend"] == "onnx"
    assert results["onnx"]["onnx"].endswith(OPTIMIZED_FILE)
    for name in ("onnx", "onnx_file"):
        assert results[name]["accuracy"] == results["torch"]["accuracy"]
        assert results[name]["n_examples"] == results["torch"]["n_examples"] == 24
    # The model learned the task, and int8 quantisation keeps that (0.5 is chance here).
    majority = majority_rate(data / "dev.tsv")
    assert results["torch"]["accuracy"] >= majority + 0.3
    assert results["int8"]["accuracy"] >= majority + 0.3


def test_export_cli_with_task_reports_dev_metrics(exported, tmp_path, capsys):
    model_dir, _ = exported
    data = write_sst2(tmp_path / "SST-2", n_dev=16)
    out = tmp_path / "exported"
    args = ["export", f"--model={model_dir}", f"--output={out}", "--int8"]
    assert main([*args, f"task.data_dir={data}", "task.max_seq_length=32"]) == 0
    text = capsys.readouterr().out
    assert "16 dev examples" in text
    assert "int8 quantisation changes dev accuracy by" in text
    assert "model_int8.onnx" in text and "MB" in text
    report = json.loads((out / "export.json").read_text())
    assert set(report["metrics"]) == {"pytorch", FP32_FILE, INT8_FILE}
    assert report["metrics"][FP32_FILE] == report["metrics"]["pytorch"]
    majority = majority_rate(data / "dev.tsv")
    assert report["metrics"]["pytorch"]["accuracy"] >= majority + 0.3  # a trained model
    assert report["metrics"][INT8_FILE]["accuracy"] >= majority + 0.3
    assert main(args) == 0  # exporting again replaces the previous export


def test_default_output_is_inside_the_model_dir(tmp_path):
    model_dir = make_classifier(tmp_path / "model")
    assert main(["export", f"--model={model_dir}"]) == 0
    assert (model_dir / "onnx" / FP32_FILE).is_file()


@pytest.mark.parametrize("activation", [None, "relu"])  # relu: heads converted from the seed
def test_token_head_export(tmp_path, activation):
    model_dir = make_classifier(
        tmp_path / "tok", head="token", labels=("O", "B", "I"), classifier_activation=activation
    )
    result = export_model(model_dir, tmp_path / "onnx", optimize=True)
    assert result.head == "token"
    model, _ = load_model(model_dir, head="token")
    b = generated_batches(40, 64, seed=5)[-1]
    got = OnnxLogits(tmp_path / "onnx" / FP32_FILE)(b)
    assert got.shape == (*b["input_ids"].shape, 3)
    with torch.no_grad():
        want = [torch_logits_fn(model)(b)]
    for name in (FP32_FILE, OPTIMIZED_FILE):
        assert max_logit_diff(want, OnnxLogits(tmp_path / "onnx" / name), [b], True) <= 1e-4


@pytest.mark.parametrize("head", ["sequence", "token"])
def test_single_segment_model_has_no_token_type_input(tmp_path, head):
    """type_vocab_size 1 (a student of a RoBERTa-style teacher, every type id 0): the graphs
    take input_ids and attention_mask only, fuse as BERT's do, and match PyTorch."""
    labels = ("0", "1") if head == "sequence" else ("O", "B", "I")
    model_dir = make_classifier(tmp_path / "m", head=head, labels=labels, type_vocab_size=1)
    result = export_model(model_dir, tmp_path / "onnx", optimize=True, int8=True)
    fused_attention = 1 if head == "sequence" else 2  # a sequence head's last layer: [CLS] only
    assert result.fused.get("EmbedLayerNormalization") == 1
    assert result.fused.get("Attention") == fused_attention
    model, _ = load_model(model_dir, head=head)
    batches = generated_batches(40, 64, seed=3, segments=False)
    assert not any(b["token_type_ids"].any() for b in batches)
    with torch.no_grad():
        want = [torch_logits_fn(model)(b) for b in batches]
    for name in (FP32_FILE, OPTIMIZED_FILE, INT8_FILE):
        run = OnnxLogits(tmp_path / "onnx" / name)
        assert run.inputs == ["input_ids", "attention_mask"], name
        limit = 0.05 if name == INT8_FILE else 1e-4
        assert max_logit_diff(want, run, batches, head == "token") <= limit, name


def test_failed_check_writes_nothing(tmp_path, monkeypatch):
    model_dir = make_classifier(tmp_path / "model")
    monkeypatch.setattr(export_onnx, "TOLERANCE", -1.0)  # any difference fails
    with pytest.raises(UserError, match="export check failed: model.onnx differs"):
        export_model(model_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_user_errors(tmp_path, tiny_bert_dir, capsys):
    model_dir = make_classifier(tmp_path / "model")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    cases = [
        (["--model", str(tiny_bert_dir)], "no trained sequence-classification head"),
        (["--model", str(model_dir), "--output", str(tmp_path / "busy")], "not an export folder"),
        (["--model", str(model_dir), "--opset", "13"], "use 17 or newer"),
        (["--model", str(tmp_path / "missing")], "model directory not found"),
    ]
    for args, message in cases:
        assert main(["export", *args]) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    for args, message in (
        ([f"--model={model_dir}", "--backend=onnx"], "no model.onnx"),
        ([f"--model={model_dir}", "--precision=int8"], "not available with the torch backend"),
    ):
        assert main(["evaluate", *args, "task.data_dir=x"]) == 2
        assert message in capsys.readouterr().err
