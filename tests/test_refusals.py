"""Mistakes a user can make end in one `error: ...` line on stderr and exit status 2, and leave
nothing written: output paths and devices, vocabularies, corpus inputs, label files and scores,
the selection metric; plus the warnings and lookups that keep a user from wrong results."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch

from tinybert.cli import main
from tinybert.data import get_task, read_examples
from tinybert.data.clue import TNEWS_CODES
from tinybert.errors import UserError

from .conftest import corpus_text, write_sst2, write_vocab
from .test_export import make_classifier

FIXTURES = Path(__file__).parent / "fixtures"


def one_error(capsys, *needles: str) -> str:
    """The captured stderr must be exactly one `error: ...` line holding every needle."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes: compare before and after to see nothing written."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    """A tiny SST-2-shaped classifier (labels 0/1) saved like a fine-tuned model."""
    return make_classifier(tmp_path_factory.mktemp("refusals") / "model")


def eval_args(sst2: Path) -> list[str]:
    return [f"task.data_dir={sst2}", "task.max_seq_length=16", "finetune.eval_batch_size=8"]


def train_args(tmp_path: Path, bert: Path, sst2: Path) -> list[str]:
    return [
        f"model={bert}",
        f"output_dir={tmp_path / 'out'}",
        f"task.data_dir={sst2}",
        "task.max_seq_length=16",
        "finetune.max_steps=1",
        "finetune.batch_size=8",
    ]


# --------------------------------------------------------------------------- 1. paths, devices


def test_predict_output_into_a_missing_folder(classifier, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("good film\n")
    target = tmp_path / "nope" / "out.jsonl"
    code = main(["predict", str(source), f"--model={classifier}", "-o", str(target)])
    assert code == 2
    one_error(capsys, str(tmp_path / "nope"), "does not exist")
    assert not (tmp_path / "nope").exists()


def test_predict_output_naming_its_input_is_refused(classifier, tmp_path, capsys, monkeypatch):
    source = tmp_path / "in.txt"
    source.write_text("good film\nbad film\n")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    # the same file under another spelling is still the input
    for out in (str(source), "./in.txt", f"../{tmp_path.name}/in.txt"):
        assert main(["predict", str(source), f"--model={classifier}", "-o", out]) == 2
        one_error(capsys, "is the input file")
    assert snapshot(tmp_path) == before


def test_evaluate_output_missing_folder_or_directory(classifier, sst2_dir, tmp_path, capsys):
    before = snapshot(classifier)
    for out, needle in ((tmp_path / "nope" / "r.json", "does not exist"), (tmp_path, "directory")):
        args = ["evaluate", *eval_args(sst2_dir), f"--model={classifier}", f"--output={out}"]
        assert main(args) == 2
        one_error(capsys, "--output", needle)
    assert snapshot(classifier) == before  # no eval_results.json either
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize("under", [False, True])
@pytest.mark.parametrize("command", ["finetune", "task-distill", "general-distill"])
def test_output_dir_that_is_a_file(command, under, tmp_path, tiny_bert_dir, sst2_dir, capsys):
    taken = tmp_path / "taken"
    taken.write_text("keep me\n")
    output_dir = taken / "run" if under else taken  # a folder under a file cannot be made either
    args = [
        *train_args(tmp_path, tiny_bert_dir, sst2_dir),
        f"teacher={tiny_bert_dir}",
        f"corpus.path={tmp_path}",
        f"output_dir={output_dir}",
    ]
    assert main([command, *args]) == 2
    one_error(capsys, f"output_dir {output_dir}", "is a file")
    assert taken.read_text() == "keep me\n"


def test_predict_device_cuda_without_a_gpu(classifier, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out.jsonl"
    for device in ("cuda", "cuda:1"):
        code = main(["predict", f"--model={classifier}", f"--device={device}", "-o", str(out)])
        assert code == 2
        one_error(capsys, "--device", "no CUDA GPU")
    assert not out.exists()


def test_unknown_device_on_the_command_line_and_in_the_config(
    classifier, sst2_dir, tmp_path, capsys
):
    out = tmp_path / "out.jsonl"
    assert main(["predict", f"--model={classifier}", "--device=banana", "-o", str(out)]) == 2
    one_error(capsys, "--device", "banana")
    assert not out.exists()
    args = ["evaluate", *eval_args(sst2_dir), "device=banana", f"--model={classifier}"]
    assert main(args) == 2
    one_error(capsys, "device", "banana")
    assert not (classifier / "eval_results.json").exists()


def test_predict_device_mps_without_one(classifier, capsys, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert main(["predict", f"--model={classifier}", "--device=mps"]) == 2
    one_error(capsys, "--device", "mps")


def test_init_model_and_prepare_corpus_output_that_is_a_file(tmp_path, corpus_file, capsys):
    vocab = write_vocab(tmp_path / "v") / "vocab.txt"
    taken = tmp_path / "taken"
    taken.write_text("keep me\n")
    for out in (taken, taken / "sub"):
        assert main(["init-model", f"--vocab={vocab}", f"--output={out}"]) == 2
        one_error(capsys, f"--output {out}", "is a file")
        args = [str(corpus_file), f"--tokenizer={vocab.parent}", f"--output={out}"]
        assert main(["prepare-corpus", *args]) == 2
        one_error(capsys, f"--output {out}", "is a file")
    assert taken.read_text() == "keep me\n"


def test_evaluate_missing_model_folder(sst2_dir, tmp_path, capsys):
    missing = tmp_path / "no-model"
    assert main(["evaluate", *eval_args(sst2_dir), f"--model={missing}"]) == 2
    one_error(capsys, str(missing), "no such model folder")
    assert not missing.exists()


# --------------------------------------------------------------------------- 2. evaluate's stdout


def test_evaluate_with_skipped_rows_keeps_stdout_pure_json(classifier, tmp_path, capsys):
    sst2 = write_sst2(tmp_path / "SST-2")
    dev = sst2 / "dev.tsv"
    dev.write_text(dev.read_text() + "a row without its label\n\tX\n")  # two bad rows
    out = tmp_path / "eval.json"
    args = ["evaluate", *eval_args(sst2), "task.on_bad_row=skip", f"--model={classifier}"]
    assert main([*args, f"--output={out}"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # the JSON and nothing else
    assert result["skipped_rows"] == 2 and result["n_examples"] == 16
    assert json.loads(out.read_text()) == result
    assert "skipped 2 malformed" in captured.err
    # without skip, the first bad row stops the run with its file:line
    assert main(["evaluate", *eval_args(sst2), f"--model={classifier}", f"--output={out}"]) == 2
    one_error(capsys, f"{dev}:18")


# --------------------------------------------------------------------------- 3. vocabularies


def truncate_vocab(model_dir: Path, drop: int = 3) -> Path:
    """Drop the last `drop` tokens of vocab.txt: the embedding table is then bigger."""
    vocab = model_dir / "vocab.txt"
    vocab.write_text("\n".join(vocab.read_text().split()[:-drop]) + "\n")
    return model_dir


def test_finetune_refuses_a_vocab_smaller_than_the_embeddings(
    tmp_path, tiny_bert_dir, sst2_dir, capsys
):
    truncate_vocab(tiny_bert_dir)
    args = train_args(tmp_path, tiny_bert_dir, sst2_dir)
    assert main(["finetune", *args]) == 2
    one_error(capsys, str(tiny_bert_dir), "task.allow_smaller_vocab=true")
    assert not (tmp_path / "out/teacher/metrics.jsonl").exists()
    assert main(["finetune", *args, "task.allow_smaller_vocab=true"]) == 0
    assert (tmp_path / "out/teacher/final").is_dir()


def test_evaluate_and_predict_refuse_a_vocab_smaller_than_the_embeddings(
    classifier, sst2_dir, tmp_path, capsys
):
    model_dir = truncate_vocab(shutil.copytree(classifier, tmp_path / "model"))
    out = tmp_path / "eval.json"
    args = ["evaluate", *eval_args(sst2_dir), f"--model={model_dir}", f"--output={out}"]
    assert main(args) == 2
    one_error(capsys, "vocab_size", "task.allow_smaller_vocab=true")
    assert not out.exists()
    assert main([*args, "task.allow_smaller_vocab=true"]) == 0  # overrides after options too
    assert json.loads(out.read_text())["n_examples"] == 16
    capsys.readouterr()

    source = tmp_path / "in.txt"
    source.write_text("good film\n")
    predicted = tmp_path / "out.jsonl"
    args = ["predict", str(source), f"--model={model_dir}", "-o", str(predicted)]
    assert main(args) == 2
    one_error(capsys, str(model_dir), "--allow-smaller-vocab")
    assert not predicted.exists()
    assert main([*args, "--allow-smaller-vocab"]) == 0
    assert json.loads(predicted.read_text())["label"] in ("0", "1")
    # an intact vocabulary passes without the flag
    assert main(["predict", str(source), f"--model={classifier}", "-o", str(predicted)]) == 0


# --------------------------------------------------------------------------- 4. corpus inputs


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("model.bin", b"PK\x03\x04\x00\x00 some zip header", "a NUL byte at byte 4"),
        ("utf16.txt", "good film\n".encode("utf-16"), "UTF-16"),
        ("packed.txt.gz", gzip.compress(b"\x00\x01\x02" * 100), "a NUL byte at byte 0"),
    ],
)
def test_prepare_corpus_refuses_binary_files(tmp_path, corpus_file, capsys, name, content, needle):
    binary = tmp_path / name
    binary.write_bytes(content)
    vocab = write_vocab(tmp_path / "v")
    out = tmp_path / "prepared"
    # the good file first: the binary one is refused before anything is written
    args = [str(corpus_file), str(binary), f"--tokenizer={vocab}", f"--output={out}"]
    assert main(["prepare-corpus", *args]) == 2
    one_error(capsys, str(binary), "not a text file", needle)
    assert not out.exists()


def test_prepare_corpus_skips_and_counts_lines_that_are_not_utf8(tmp_path, capsys):
    vocab = write_vocab(tmp_path / "v")
    text = corpus_text(6, seed=1).splitlines()
    latin1 = tmp_path / "latin1.txt"  # three paragraphs with a latin-1 accent
    bad = [2, 5, 9]
    lines = [
        (line + " caf\xe9").encode("latin-1") if i in bad else line.encode()
        for i, line in enumerate(text, start=1)
    ]
    latin1.write_bytes(b"\n".join(lines) + b"\n")
    clean = tmp_path / "clean.txt"
    clean.write_text("\n".join(text) + "\n")
    out = tmp_path / "prepared"
    args = [str(clean), str(latin1), f"--tokenizer={vocab}", f"--output={out}"]
    assert main(["prepare-corpus", *args, "--max-seq-length=32"]) == 0
    summary = capsys.readouterr().out
    assert f"{latin1}: skipped 3 lines" in summary and "first at line 2" in summary
    assert str(clean) + ":" not in summary
    meta = json.loads((out / "meta.json").read_text())
    n_bytes = sum(len(lines[i - 1]) + 1 for i in bad)
    assert meta["undecodable"] == {str(latin1): {"lines": 3, "bytes": n_bytes, "first_line": 2}}
    # no U+FFFD replacement text: the latin-1 file gives exactly the clean text minus its lines
    from tinybert.data.corpus import read_documents

    kept = [p for doc, _ in read_documents(latin1) for p in doc]
    wanted = [line for i, line in enumerate(text, start=1) if line and i not in bad]
    assert kept == wanted


# --------------------------------------------------------------------------- 5. TNEWS labels.json


def write_tnews(directory: Path, labels: list[tuple[str, str]]) -> Path:
    """A TNEWS folder: train/dev rows of every class, and `labels` as its labels.json."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = [
        {"label": code, "label_desc": desc, "sentence": f"新闻 {desc}", "keywords": ""}
        for code, desc in TNEWS_CODES.items()
    ]
    for name in ("train.json", "dev.json"):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        (directory / name).write_text(text, encoding="utf-8")
    listed = [{"label": code, "label_desc": desc} for code, desc in labels]
    (directory / "labels.json").write_text("".join(json.dumps(r) + "\n" for r in listed))
    return directory


def test_tnews_labels_json_is_checked(tmp_path, tiny_bert_dir, capsys):
    real = list(TNEWS_CODES.items())
    good = write_tnews(tmp_path / "good", real)
    examples, skipped = read_examples(get_task("tnews"), good / "dev.json")
    assert len(examples) == 15 and skipped == 0

    swapped = [real[1], real[0], *real[2:]]  # the same names, another order: other class ids
    for name, labels in (("swapped", swapped), ("short", real[:-1])):
        folder = write_tnews(tmp_path / name, labels)
        with pytest.raises(UserError, match=f"{folder / 'labels.json'}: the TNEWS label list"):
            read_examples(get_task("tnews"), folder / "dev.json")
    broken = write_tnews(tmp_path / "broken", real)
    with (broken / "labels.json").open("a") as f:
        f.write('{"label": "117"}\n')
    with pytest.raises(UserError, match=f"{broken / 'labels.json'}:16: expected"):
        read_examples(get_task("tnews"), broken / "train.json")

    args = [
        f"model={tiny_bert_dir}",
        f"output_dir={tmp_path / 'out'}",
        "task.name=tnews",
        "task.max_seq_length=32",  # the tiny model has 64 positions (refused at start)
        f"task.data_dir={tmp_path / 'swapped'}",
        "finetune.max_steps=1",
    ]
    assert main(["finetune", *args]) == 2
    one_error(capsys, str(tmp_path / "swapped" / "labels.json"), "differs from CLUE's 15 classes")
    assert not (tmp_path / "out/teacher/metrics.jsonl").exists()


# --------------------------------------------------------------------------- 6. STS-B scores


@pytest.mark.parametrize("score", ["5.5", "-0.2", "50"])
def test_stsb_scores_outside_0_to_5_are_refused(tmp_path, tiny_bert_dir, capsys, score):
    stsb = shutil.copytree(FIXTURES / "glue/STS-B", tmp_path / "STS-B")
    task = get_task("stsb")
    examples, _ = read_examples(task, stsb / "train.tsv")  # 5.000 and 0.000: the ends are in
    assert {0.0, 5.0} <= {e.label for e in examples}
    train = stsb / "train.tsv"
    lines = train.read_text().splitlines()
    lines[3] = lines[3].rsplit("\t", 1)[0] + "\t" + score
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        UserError, match=f"{train}:4: score '{score}' is outside stsb's range 0 to 5"
    ):
        read_examples(task, train)
    kept, skipped = read_examples(task, train, on_error="skip")
    assert skipped == 1 and len(kept) == len(examples) - 1

    args = [
        f"model={tiny_bert_dir}",
        f"output_dir={tmp_path / 'out'}",
        "task.name=stsb",
        "task.max_seq_length=32",  # the tiny model has 64 positions (refused at start)
        f"task.data_dir={stsb}",
        "finetune.max_steps=1",
    ]
    assert main(["finetune", *args]) == 2
    one_error(capsys, f"{train}:4", "outside stsb's range")


# --------------------------------------------------------------------------- 7. task.metric


def read_log(path: Path) -> tuple[list[tuple[int, dict]], dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    evals = [(r["step"], r["eval"]) for r in records if "eval" in r]
    return evals, next(r for r in records if r.get("done"))


@pytest.mark.parametrize(("metric", "key"), [(None, "acc_and_f1"), ("f1", "f1")])
def test_mrpc_best_is_chosen_by_the_selection_metric(tmp_path, tiny_bert_dir, capsys, metric, key):
    args = [
        f"model={tiny_bert_dir}",
        f"output_dir={tmp_path / 'out'}",
        "task.name=mrpc",
        f"task.data_dir={FIXTURES / 'glue/MRPC'}",
        "task.max_seq_length=32",
        "finetune.epochs=4",
        "finetune.batch_size=1",
        "finetune.eval_steps=1",
        "finetune.lr=3e-3",
        "finetune.warmup_ratio=0",
        *([f"task.metric={metric}"] if metric else []),
    ]
    assert main(["finetune", *args]) == 0
    out = capsys.readouterr().out
    assert f": {key} = " in out and f"best {key} = " in out
    evals, done = read_log(tmp_path / "out/teacher/metrics.jsonl")
    assert len(evals) == 12
    best = max(e[key] for _, e in evals)
    assert done["best_metric"] == pytest.approx(best)
    first = next(step for step, e in evals if e[key] == best)  # ties keep the earlier model
    assert f"{key} = {best:.4f} at step {first}" in out.splitlines()[-2] + out.splitlines()[-1]
    result = tmp_path / "best.json"
    best_dir = tmp_path / "out/teacher/best"
    assert main(["evaluate", *args, f"--model={best_dir}", f"--output={result}"]) == 0
    assert json.loads(result.read_text())[key] == pytest.approx(best)


def test_unknown_selection_metric_is_refused_before_training(
    tmp_path, tiny_bert_dir, sst2_dir, capsys
):
    args = [*train_args(tmp_path, tiny_bert_dir, sst2_dir), "task.metric=bogus"]
    assert main(["finetune", *args]) == 2
    one_error(capsys, "task.metric='bogus'", "accuracy")
    assert not (tmp_path / "out/teacher/metrics.jsonl").exists()
    # task-distill checks it before phase 1 (which does not evaluate), not at phase 2
    teacher = make_classifier(tmp_path / "teacher")
    assert main(["task-distill", *args, f"teacher={teacher}"]) == 2
    one_error(capsys, "task.metric='bogus'")
    assert not list((tmp_path / "out").rglob("metrics.jsonl"))
    mrpc = ["task.name=mrpc", f"task.data_dir={FIXTURES / 'glue/MRPC'}"]
    assert main(["finetune", *args, *mrpc, "task.metric=mcc"]) == 2
    one_error(capsys, "task.metric='mcc'", "accuracy, f1, acc_and_f1")


CONSTANT_WARNING = "predicts one class for every dev row"


@pytest.mark.slow  # 96 steps, to learn the task
def test_no_constant_predictor_warning_for_a_model_that_learned(tmp_path, tiny_bert_dir, capsys):
    sst2 = write_sst2(tmp_path / "SST-2")
    # A model that learned the task: two classes predicted, no warning.
    learned = [
        *train_args(tmp_path, tiny_bert_dir, sst2),
        "finetune.max_steps=null",
        "finetune.epochs=16",
        "finetune.lr=3e-3",
        f"output_dir={tmp_path / 'learned'}",
    ]
    assert main(["finetune", *learned]) == 0
    captured = capsys.readouterr()
    evals, done = read_log(tmp_path / "learned/teacher/metrics.jsonl")
    assert done["best_metric"] > 0.9
    assert CONSTANT_WARNING not in captured.out + captured.err


def test_constant_predictor_warning(tmp_path, tiny_bert_dir, capsys):
    sst2 = write_sst2(tmp_path / "SST-2")
    args = train_args(tmp_path, tiny_bert_dir, sst2)
    # Every dev row the same sentence: whatever the model learned, it answers one class.
    dev = sst2 / "dev.tsv"
    dev.write_text("sentence\tlabel\n" + "the film was good\t1\nthe film was good\t0\n" * 4)
    assert main(["finetune", *args]) == 0
    captured = capsys.readouterr()
    evals, _ = read_log(tmp_path / "out/teacher/metrics.jsonl")
    assert evals[-1][1]["predicted_classes"] == 1
    assert f"warning: finetune: the model kept as best/ (step 1) {CONSTANT_WARNING}" in (
        captured.err  # once, at the end, on stderr
    )
    assert captured.err.count(CONSTANT_WARNING) == 1


# --------------------------------------------------------------------------- 8. DIR/onnx


def test_onnx_backend_finds_the_default_export_folder(tmp_path, sst2_dir, capsys):
    from tinybert.predict import Predictor

    model_dir = make_classifier(tmp_path / "model")
    source = tmp_path / "in.txt"
    source.write_text("good film\nthe plot was dull\n")
    code = main(["predict", str(source), f"--model={model_dir}", "--backend=onnx"])
    assert code == 2  # nothing exported yet: say how to make one
    one_error(capsys, "tinybert export --model")

    assert main(["export", f"--model={model_dir}", "--int8"]) == 0  # -> model_dir/onnx
    capsys.readouterr()
    torch_rows = []
    for backend, precision in (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")):
        args = [f"--backend={backend}", f"--precision={precision}", "--no-progress"]
        assert main(["predict", str(source), f"--model={model_dir}", *args]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["line"] for r in rows] == [1, 2]
        if backend == "torch":
            torch_rows = rows
        elif precision == "fp32":
            for got, want in zip(rows, torch_rows, strict=True):
                assert got["label"] == want["label"]
                assert got["probs"] == pytest.approx(want["probs"], abs=1e-4)
    predictor = Predictor(model_dir, backend="onnx", precision="int8")
    assert predictor.model_file == str(model_dir / "onnx" / "model_int8.onnx")
    assert Predictor(model_dir).backend == "torch"  # auto: a folder with weights is PyTorch

    results = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.json"
        args = ["evaluate", *eval_args(sst2_dir), f"--model={model_dir}", f"--backend={backend}"]
        assert main([*args, f"--output={out}"]) == 0
        results[backend] = json.loads(out.read_text())
    capsys.readouterr()
    assert results["onnx"]["onnx"] == str(model_dir / "onnx" / "model.onnx")
    assert results["onnx"]["accuracy"] == results["torch"]["accuracy"]
