"""Students of every teacher family, as served: the saved directory loads with transformers'
AutoTokenizer + AutoModelForSequenceClassification and gives `tinybert predict`'s inputs and
probabilities; ONNX export has no token_type_ids input where the student has no segments, and
ONNX (fp32, int8) predict, evaluate and benchmark run on it.

The student is tinybert's BERT with the teacher's tokenizer (tests/families.py: WordPiece, byte-
level BPE, Unigram, each with its family's special tokens and pair template) and, where the
teacher reads no segment ids, one token-type row.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import transformers

from tinybert.benchmark import SpeedOptions, measure_speed
from tinybert.cli import main
from tinybert.config import load_config
from tinybert.data import encode_texts, load_tokenizer
from tinybert.export.onnx import export_model
from tinybert.export.runtime import FP32_FILE, INT8_FILE, OPTIMIZED_FILE
from tinybert.model import BertConfig, BertForSequenceClassification, save_model

from .conftest import TINY, sst2_rows, write_sst2
from .families import MODEL_TYPES, STYLES, TOKEN_TYPES, write_tokenizer

transformers.logging.set_verbosity_error()

SINGLES = [s for s, _ in sst2_rows(4, seed=7)] + [
    "The PLOT was dull, and the acting: GREAT!",
    "naïve café — 42 zebras ✓",  # characters the tokenizers never saw: <unk> (or bytes)
    # transformers 5's XLM-R and DeBERTa-v2 classes split these differently from tokenizer.json
    "the  plot  was\u00a0dull",
    "[MASK] and <mask> are literal here",
]
PAIRS = [(a, b) for (a, _), (b, _) in zip(sst2_rows(4, seed=8), sst2_rows(4, seed=9), strict=True)]
LABELS = ("0", "1")  # SST-2's, for evaluate


def write_student(directory: Path, model_type: str, **tokenizer_config: object) -> Path:
    """A random tiny student of a `model_type` teacher: BERT with the teacher's tokenizer files
    (saved by save_model from the teacher's folder; `tokenizer_config` changes keys of the
    teacher's tokenizer_config.json, None removes one), one token-type row where the teacher
    has no segment ids. Weights drawn wide (std 0.3) so that probabilities move with the input
    and a difference in the inputs shows."""
    teacher = directory.parent / f"{directory.name}-teacher"
    tok = write_tokenizer(teacher, model_type)
    if tokenizer_config:
        path = teacher / "tokenizer_config.json"
        changed = json.loads(path.read_text()) | tokenizer_config
        path.write_text(json.dumps({k: v for k, v in changed.items() if v is not None}))
    config = BertConfig(
        vocab_size=tok.get_vocab_size(with_added_tokens=True),
        type_vocab_size=2 if TOKEN_TYPES[model_type] else 1,
        pad_token_id=tok.token_to_id(STYLES[model_type].pad),
        num_labels=2,
        id2label=LABELS,
        initializer_range=0.3,
        **TINY,
    )
    torch.manual_seed(0)
    save_model(BertForSequenceClassification(config), directory, tokenizer_dir=teacher)
    return directory


@pytest.fixture(scope="module")
def students(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("students")
    return {t: write_student(root / t, t) for t in MODEL_TYPES}


def predict_cli(model: Path, texts: list, tmp_path: Path, capsys, *args: str) -> np.ndarray:
    """(N, 2) probabilities from `tinybert predict` on a text file of `texts` (pairs tab-joined)."""
    path = tmp_path / "inputs.txt"
    path.write_text("".join((t if isinstance(t, str) else "\t".join(t)) + "\n" for t in texts))
    code = main(
        ["predict", str(path), f"--model={model}", "--batch-size=3", "--no-progress", *args]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["line"] for r in rows] == list(range(1, len(texts) + 1))
    return np.array([[r["probs"][name] for name in LABELS] for r in rows])


def hf_batch(tokenizer, texts: list) -> dict[str, torch.Tensor]:
    """One padded batch, as transformers' tokenizer makes it (singles, or pairs)."""
    if isinstance(texts[0], str):
        return tokenizer(texts, padding=True, return_tensors="pt")
    return tokenizer(
        [a for a, _ in texts], [b for _, b in texts], padding=True, return_tensors="pt"
    )


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_transformers_serves_the_student_as_predict_does(students, model_type, tmp_path, capsys):
    check_served_like_predict(students[model_type], model_type, tmp_path, capsys)


@pytest.mark.parametrize("model_type", ["roberta", "deberta-v2"])
def test_teacher_tokenizer_settings_that_would_change_inputs_are_fixed(
    model_type, tmp_path, capsys
):
    """A teacher's tokenizer_config.json may pad on the left, add its own BOS/EOS, or not say
    which inputs the model takes (the class default has token_type_ids): the student's says
    what tinybert does."""
    quirks = {"padding_side": "left", "add_bos_token": True, "model_input_names": None}
    student = write_student(tmp_path / model_type, model_type, **quirks)
    saved = json.loads((student / "tokenizer_config.json").read_text())
    assert saved["padding_side"] == "right" and "add_bos_token" not in saved
    assert saved["model_input_names"] == ["input_ids", "attention_mask"]
    check_served_like_predict(student, model_type, tmp_path, capsys)


def check_served_like_predict(student: Path, model_type: str, tmp_path: Path, capsys) -> None:
    """transformers' tokenizer gives the student tinybert's inputs (ids, type ids only where
    it has segments, padding on the right) and the model `tinybert predict`'s probabilities."""
    segments = TOKEN_TYPES[model_type]
    tokenizer = transformers.AutoTokenizer.from_pretrained(student)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(student).eval()
    ours = load_tokenizer(student)
    for texts in (SINGLES, PAIRS):
        batch = hf_batch(tokenizer, texts)
        # exactly the model's inputs: no token_type_ids where it has no segments
        assert sorted(batch) == sorted(
            ["input_ids", "attention_mask"] + ["token_type_ids"] * segments
        )
        mask = batch["attention_mask"]
        assert not mask.all() and torch.equal(mask, mask.sort(descending=True).values)  # right
        data = encode_texts(ours, texts, 64)
        for i in range(len(texts)):
            n = int(mask[i].sum())
            assert batch["input_ids"][i, :n].tolist() == list(data[i]["input_ids"])
            types = list(data[i]["token_type_ids"])  # what tinybert feeds: all 0 without segments
            assert batch["token_type_ids"][i, :n].tolist() == types if segments else not any(types)
        with torch.no_grad():
            want = torch.softmax(model(**batch).logits.double(), -1).numpy()
        assert np.ptp(want[:, 1]) > 0.01  # the inputs move the output: a wrong one would show
        got = predict_cli(student, texts, tmp_path, capsys, "--precision=fp32")
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta", "electra"])
def test_onnx_export_and_int8_serving(students, model_type, tmp_path, capsys):
    student = students[model_type]
    out = tmp_path / "onnx"
    result = export_model(student, out, optimize=True, int8=True)  # checks ORT against torch
    assert max(result.max_diff[n] for n in (FP32_FILE, OPTIMIZED_FILE)) <= 1e-4
    inputs = ["input_ids", "attention_mask"] + ["token_type_ids"] * TOKEN_TYPES[model_type]
    for name in (FP32_FILE, OPTIMIZED_FILE, INT8_FILE):
        assert [i.name for i in onnx.load(str(out / name)).graph.input] == inputs, name
    assert result.fused.get("EmbedLayerNormalization") == 1  # the embeddings still fuse
    texts = SINGLES + PAIRS
    torch_probs = predict_cli(student, texts, tmp_path, capsys, "--precision=fp32")
    fp32 = predict_cli(out, texts, tmp_path, capsys)
    np.testing.assert_allclose(fp32, torch_probs, atol=1e-4, rtol=0)
    int8 = predict_cli(out, texts, tmp_path, capsys, "--precision=int8")
    np.testing.assert_allclose(int8, torch_probs, atol=0.05, rtol=0)  # int8: close, not equal


def test_evaluate_and_benchmark_a_student_without_segments(students, tmp_path, capsys):
    student = Path(shutil.copytree(students["roberta"], tmp_path / "student"))
    export_model(student, student / "onnx", int8=True)  # DIR/onnx: where benchmark looks
    data = write_sst2(tmp_path / "SST-2", n_train=4, n_dev=12)
    overrides = [f"task.data_dir={data}", "task.max_seq_length=32"]
    results = tmp_path / "eval.json"
    args = ["evaluate", f"--model={student / 'onnx'}", "--precision=int8", f"--output={results}"]
    assert main([*args, *overrides]) == 0
    capsys.readouterr()
    report = json.loads(results.read_text())
    assert report["onnx"].endswith(INT8_FILE) and report["n_examples"] == 12
    assert 0.0 <= report["accuracy"] <= 1.0
    options = SpeedOptions(batch_sizes=(1, 4), max_sentences=8, repeats=1, bf16=False)
    speed = measure_speed(load_config([], overrides), student, options)
    rows = {(r["backend"], r["precision"], r["batch_size"]) for r in speed["results"]}
    assert rows == {(b, p, n) for b, p in (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"))
                    for n in (1, 4)}  # fmt: skip
    assert all(r["sequences_per_s"] > 0 for r in speed["results"])
