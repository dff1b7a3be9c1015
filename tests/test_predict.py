"""`tinybert predict`: formats, pairs, input order, backends, bad input with line numbers."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tinybert.cli import main
from tinybert.errors import UserError
from tinybert.export.onnx import export_model
from tinybert.model import BertConfig, BertForSequenceClassification, save_model
from tinybert.predict import PredictOptions, Predictor, predict_file, read_records

from .conftest import sst2_rows
from .test_export import make_classifier

SENTENCES = [s for s, _ in sst2_rows(12, seed=4)]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path]:
    """(saved model dir with labels neg/pos, its export folder with the int8 file)."""
    root = tmp_path_factory.mktemp("predict")
    model_dir = make_classifier(root / "model", labels=("neg", "pos"))
    export_model(model_dir, model_dir / "onnx", int8=True)
    return model_dir, model_dir / "onnx"


def expected_probs(model_dir: Path, texts: list) -> list[list[float]]:
    """Each input run alone (batch of 1, no padding): the order-free reference."""
    predictor = Predictor(model_dir, backend="torch")
    return [torch.softmax(predictor.logits([t], 1, 128)[0], -1).tolist() for t in texts]


def run(args: list[str], capsys) -> tuple[int, list[dict], str]:
    code = main(["predict", *args, "--no-progress"])
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err


def check(rows: list[dict], probs: list[list[float]], lines: list[int], tol: float = 1e-5):
    assert [r["line"] for r in rows] == lines
    for row, want in zip(rows, probs, strict=True):
        assert row["label"] == ("neg", "pos")[int(np.argmax(want))]
        assert list(row["probs"]) == ["neg", "pos"]
        assert np.allclose(list(row["probs"].values()), want, atol=tol)


def test_tsv_with_header_keeps_input_order(model, tmp_path, capsys):
    model_dir, _ = model
    path = tmp_path / "dev.tsv"  # the GLUE SST-2 layout: the label column is ignored
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t1\n" for s in SENTENCES))
    # batch 3 of length-sorted inputs: order must come back to the file's
    code, rows, _ = run([str(path), f"--model={model_dir}", "--batch-size=3"], capsys)
    assert code == 0
    check(rows, expected_probs(model_dir, SENTENCES), list(range(2, 14)))


def test_stdin_lines_and_pairs(model, capsys, monkeypatch):
    model_dir, _ = model
    inputs = [SENTENCES[0], (SENTENCES[1], SENTENCES[2]), SENTENCES[3]]
    text = "".join(t + "\n" if isinstance(t, str) else "\t".join(t) + "\n" for t in inputs)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    code, rows, _ = run([f"--model={model_dir}"], capsys)
    assert code == 0
    check(rows, expected_probs(model_dir, inputs), [1, 2, 3])
    assert rows[1]["probs"] != rows[2]["probs"]  # the pair is one input, not two


def test_jsonl_and_csv_files(model, tmp_path, capsys):
    model_dir, _ = model
    inputs = [SENTENCES[0], (SENTENCES[1], SENTENCES[2]), 'quoted, "comma" text']
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(
                {"id": i, "text": t} if isinstance(t, str) else {"text": t[0], "text_pair": t[1]}
            )  # fmt: skip
            for i, t in enumerate(inputs)
        )
        + "\n"
    )
    csv = tmp_path / "in.csv"  # a quoted field spans two lines: the row is named by its first
    csv.write_text(
        'text,text_pair,label\na,,1\n"two\nlines",b,0\n' + '"quoted, ""comma"" text",x,1\n'
    )
    want = expected_probs(model_dir, inputs)
    code, rows, _ = run([str(jsonl), f"--model={model_dir}"], capsys)
    assert code == 0
    check(rows, want, [1, 2, 3])
    code, rows, err = run([str(csv), f"--model={model_dir}", "--skip-bad"], capsys)
    assert code == 0
    assert [r["line"] for r in rows] == [2, 3, 5]
    assert rows[0] == {"line": 2, "error": "empty text in the pair field"}
    check(rows[1:], expected_probs(model_dir, [("two\nlines", "b"), ('quoted, "comma" text', "x")]), [3, 5])  # fmt: skip
    assert f"{csv}:2: empty text in the pair field" in err


def test_onnx_backends_and_output_file(model, tmp_path, capsys):
    model_dir, export_dir = model
    path = tmp_path / "in.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
    want = expected_probs(model_dir, SENTENCES)
    out = tmp_path / "out.jsonl"
    assert main(["predict", str(path), f"--model={export_dir}", f"--output={out}"]) == 0
    check([json.loads(x) for x in out.read_text().splitlines()], want, list(range(1, 13)), 1e-4)
    for args in (["--precision=int8"], ["--backend=torch", "--precision=bf16"]):
        target = model_dir if "--backend=torch" in args else export_dir
        code, rows, _ = run([str(path), f"--model={target}", *args], capsys)
        assert code == 0 and [r["line"] for r in rows] == list(range(1, 13))
        assert all(abs(sum(r["probs"].values()) - 1) < 1e-5 for r in rows)


def test_regression_writes_values(tmp_path, capsys):
    model_dir = make_classifier(tmp_path / "reg", labels=("score",))
    code, rows, _ = run(
        [str(_write(tmp_path / "x.txt", "good film\n")), f"--model={model_dir}"], capsys
    )
    assert code == 0 and list(rows[0]) == ["line", "value"]
    assert isinstance(rows[0]["value"], float)


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


BAD_INPUTS = [
    ("empty.txt", "good\n\nbad\n", 2, "empty line"),
    ("fields.txt", "good\na\tb\tc\n", 2, "3 tab-separated fields"),
    ("header.tsv", "sentence\tlabel\ngood\t1\nbad\n", 3, "1 tab-separated fields but the header"),
    ("latin1.txt", b"good\ncaf\xe9 film\n", 2, "not UTF-8"),
    ("bad.jsonl", '{"text": "good"}\n{"text": "bad"\n', 2, "not valid JSON"),
    ("list.jsonl", '{"text": "good"}\n["bad"]\n', 2, "expected an object"),
    ("nokey.jsonl", '{"text": "good"}\n{"sentence_b": "x"}\n', 2, 'no "text" key'),
    ("short.csv", "text,label\ngood,1\nbad\n", 3, "1 fields but the header has 2"),
]


@pytest.mark.parametrize(("name", "content", "line", "message"), BAD_INPUTS)
def test_bad_input_names_the_line(model, tmp_path, capsys, name, content, line, message):
    model_dir, _ = model
    path = _write(tmp_path / name, content)
    out = tmp_path / "out.jsonl"
    code, _, err = run([str(path), f"--model={model_dir}", f"--output={out}"], capsys)
    assert code == 2
    assert err.startswith(f"error: {path}:{line}: ") and message in err
    assert "--skip-bad" in err
    assert not out.exists()  # no half-written output
    code, rows, err = run([str(path), f"--model={model_dir}", "--skip-bad"], capsys)
    assert code == 0
    bad = [r for r in rows if "error" in r]
    assert [r["line"] for r in bad] == [line] and message in bad[0]["error"]
    assert f"{path}:{line}:" in err and "1 of " in err
    assert all("label" in r for r in rows if "error" not in r)


def test_whole_file_errors(model, tmp_path, capsys):
    model_dir, export_dir = model
    binary = _write(tmp_path / "model.bin", b"\x00\x01\x02 not text")
    headless = _write(tmp_path / "plain.csv", "good,1\n")
    for args, message in (
        ([str(binary)], "not a text file"),
        ([str(headless)], f"{headless}:1: a CSV input needs a header row"),
        ([str(tmp_path / "missing.txt")], "input file not found"),
        (["--max-seq-length=1000", str(headless)], "--max-seq-length 1000: use 5 to 64"),
        (["--precision=int8", "--backend=torch", str(headless)], "not available with the torch"),
    ):
        code, _, err = run([*args, f"--model={model_dir}"], capsys)
        assert code == 2 and message in err, err
    code, _, err = run([str(headless), f"--model={export_dir}", "--precision=bf16"], capsys)
    assert code == 2 and "not available with the onnx backend" in err


def test_model_without_head_or_int8_file(tmp_path, tiny_bert_dir, capsys):
    code, _, err = run([f"--model={tiny_bert_dir}"], capsys)
    assert code == 2 and "has no trained classifier" in err
    model_dir = make_classifier(tmp_path / "m")
    export_model(model_dir, tmp_path / "onnx")
    code, _, err = run([f"--model={tmp_path / 'onnx'}", "--precision=int8"], capsys)
    assert code == 2 and "export again with --int8" in err


def test_read_records_is_lazy_and_ordered():
    stream = io.BytesIO(b"\xef\xbb\xbffirst\r\nsecond\tpair\n")
    records = list(read_records(stream, "text"))
    assert [(r.line, r.text) for r in records] == [(1, "first"), (2, ("second", "pair"))]


def test_predict_file_function(model, tmp_path):
    model_dir, export_dir = model
    path = _write(tmp_path / "in.txt", "good film\nbad film\n")
    out = tmp_path / "o.jsonl"
    stats = predict_file(Predictor(export_dir), str(path), str(out), options=PredictOptions(2))
    assert (stats.inputs, stats.bad, stats.backend) == (2, 0, "onnx")
    with pytest.raises(UserError, match="unknown input format"):
        predict_file(Predictor(export_dir), str(path), str(out), fmt="xml")


def test_cli_subprocess_stdin(model):
    """The installed entry point end to end: stdin in, JSONL out, exit 0."""
    _, export_dir = model
    proc = subprocess.run(
        [sys.executable, "-m", "tinybert", "predict", f"--model={export_dir}"],
        input="a good film\tand a pair\nawful\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 2] and all(r["label"] in ("neg", "pos") for r in rows)


def test_labels_default_to_label_i(tmp_path, capsys):
    """A model saved without names gets HF's LABEL_i."""
    from .conftest import TINY, write_vocab

    d = write_vocab(tmp_path / "m")
    n_vocab = len((d / "vocab.txt").read_text().split())
    save_model(BertForSequenceClassification(BertConfig(vocab_size=n_vocab, **TINY)), d, d)
    code, rows, _ = run([str(_write(tmp_path / "x.txt", "good\n")), f"--model={d}"], capsys)
    assert code == 0 and list(rows[0]["probs"]) == ["LABEL_0", "LABEL_1"]


def test_progress_bar_for_a_file_without_final_newline(model, tmp_path):
    """One line and no final newline: the bar's total is 0, which makes it falsy; `bar and
    bar.update` once handed the bar itself to the inference loop as its progress callback."""
    model_dir, _ = model
    path = _write(tmp_path / "in.txt", "good film")
    out = tmp_path / "o.jsonl"
    stats = predict_file(Predictor(model_dir), str(path), str(out), show_progress=True)
    assert stats.inputs == 1 and json.loads(out.read_text())["line"] == 1
