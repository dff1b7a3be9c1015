"""Hostile-user cases from issue 16: nothing the user owns is overwritten.

A new model folder never replaces a non-empty one and appears whole or not at all; an output
may not be a file a command reads nor lie inside a model folder it reads; an output this user
cannot write is refused before any work; written files follow the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tinybert import evaluate as evaluate_module
from tinybert.cli import main
from tinybert.config import load_config
from tinybert.errors import UserError
from tinybert.model import BertConfig, BertModel, save_model
from tinybert.paths import (
    build_dir,
    check_new_output_dir,
    check_output_dir,
    check_output_file,
    current_umask,
    follow_umask,
)

from .conftest import TINY, write_vocab
from .test_export import make_classifier
from .test_refusals import one_error, snapshot

SHAPE = [
    "student.num_hidden_layers=2",
    "student.hidden_size=32",
    "student.num_attention_heads=4",
    "student.intermediate_size=37",
]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    """A tiny SST-2-shaped classifier (labels 0/1) saved like a fine-tuned model."""
    return make_classifier(tmp_path_factory.mktemp("hostile") / "model")


@pytest.fixture
def umask() -> Iterator[None]:
    """Run the test under umask 022 (a team's usual one), then restore the caller's."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def no_write_under(monkeypatch, folder: Path) -> None:
    """os.access answers "no write" for `folder` and everything under it, as for a read-only
    folder; the real permission check is skipped under root, which writes anyway."""
    real, blocked = os.access, folder.resolve()

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).resolve().is_relative_to(blocked):
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sst2_args(sst2: Path) -> list[str]:
    return [f"task.data_dir={sst2}", "task.max_seq_length=16", "finetune.eval_batch_size=8"]


# --------------------------------------------------------------------------- init-model


def test_init_model_refuses_an_existing_model(tmp_path, capsys):
    vocab = write_vocab(tmp_path / "v") / "vocab.txt"
    model = tmp_path / "model"
    assert main(["init-model", f"--vocab={vocab}", f"--output={model}", *SHAPE]) == 0
    capsys.readouterr()
    before = snapshot(model)
    args = ["init-model", f"--vocab={vocab}", f"--output={model}", "seed=7", *SHAPE]
    assert main(args) == 2
    one_error(capsys, f"--output {model}", "exists and is not empty")
    assert snapshot(model) == before  # weights, vocab and config untouched


def test_init_model_bad_vocab_leaves_nothing_behind(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("a\nb\n")  # no [PAD], [UNK], ...
    deep = tmp_path / "new" / "deeper" / "model"
    assert main(["init-model", f"--vocab={bad}", f"--output={deep}", *SHAPE]) == 2
    one_error(capsys, "missing [PAD]")
    assert not (tmp_path / "new").exists()  # nor the parent folders made for it
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["init-model", f"--vocab={bad}", f"--output={empty}", *SHAPE]) == 2
    one_error(capsys, "missing [PAD]")
    assert empty.is_dir() and not any(empty.iterdir())  # a given empty folder stays, empty
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "empty"]  # no .partial


def test_init_model_into_an_empty_folder_follows_the_umask(tmp_path, capsys, umask):
    vocab = write_vocab(tmp_path / "v") / "vocab.txt"
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["init-model", f"--vocab={vocab}", f"--output={out}", *SHAPE]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "vocab.txt", "tokenizer_config.json"} <= names
    assert {mode_of(p) for p in out.iterdir()} == {0o644}
    assert mode_of(out) == 0o755  # the renamed build folder, made under the umask too


def test_build_dir_removes_its_work_on_failure_and_ctrl_c(tmp_path):
    def fail(folder: Path, exc: BaseException) -> None:
        (folder / "half.bin").write_bytes(b"x")
        raise exc

    for exc in (OSError("disk full"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            build_dir(tmp_path / "a" / "out", lambda f, e=exc: fail(f, e), "--output")
        assert list(tmp_path.iterdir()) == []
    build_dir(tmp_path / "out", lambda f: (f / "w.bin").write_bytes(b"ok"), "--output")
    assert (tmp_path / "out" / "w.bin").read_bytes() == b"ok"
    with pytest.raises(UserError, match="exists and is not empty"):
        check_new_output_dir(tmp_path / "out", "--output")


# --------------------------------------------------------------------------- inputs


def test_evaluate_output_into_its_model_or_inputs_is_refused(
    classifier, sst2_dir, tmp_path, capsys, monkeypatch
):
    def never(*args, **kwargs):
        raise AssertionError("evaluate ran before its output was checked")

    monkeypatch.setattr(evaluate_module, "run_evaluate", never)
    config = tmp_path / "sst2.yaml"
    config.write_text(f"task:\n  data_dir: {sst2_dir}\n  max_seq_length: 16\n")
    before, data = snapshot(classifier), snapshot(sst2_dir)
    cases = [
        (classifier / "config.json", "lies inside"),
        (classifier / "model.safetensors", "lies inside"),
        (classifier / "new.json", "lies inside"),  # anything in the model folder
        (sst2_dir / "dev.tsv", "is the input file"),
        (config, "is the input file"),
    ]
    for out, needle in cases:
        args = ["evaluate", f"--config={config}", f"--model={classifier}", f"--output={out}"]
        assert main(args) == 2
        one_error(capsys, f"--output {out}", needle)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    args = ["evaluate", *sst2_args(sst2_dir), f"teacher={teacher}", f"--model={classifier}"]
    assert main([*args, f"--output={teacher / 'r.json'}"]) == 2  # any model folder the config names
    one_error(capsys, "lies inside", str(teacher))
    assert snapshot(classifier) == before and snapshot(sst2_dir) == data
    assert config.read_text().startswith("task:")


def test_evaluate_default_output_in_the_model_folder_is_allowed(classifier, sst2_dir):
    cfg = load_config([], [*sst2_args(sst2_dir), f"teacher={classifier}"])
    for out in (classifier / "eval_results.json", classifier / "." / "eval_results.json"):
        evaluate_module.check_output(cfg, out, str(classifier))  # no error


def test_predict_output_into_its_model_is_refused(classifier, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("good film\n")
    (tmp_path / "link").symlink_to(classifier / "model.safetensors")
    os.link(source, tmp_path / "hard.txt")
    before = snapshot(classifier)
    cases = [
        (classifier / "model.safetensors", "lies inside"),
        (classifier / "preds.jsonl", "lies inside"),
        (tmp_path / "link", "lies inside"),  # a symlink into the model folder
        (tmp_path / "hard.txt", "is the input file"),  # a hard link to the input
    ]
    for out, needle in cases:
        assert main(["predict", str(source), f"--model={classifier}", "-o", str(out)]) == 2
        one_error(capsys, needle)
    assert snapshot(classifier) == before
    assert source.read_text() == "good film\n"


def test_check_output_file_inputs(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w")
    for out in (model / "w.bin", model / "sub.json"):
        with pytest.raises(UserError, match="lies inside"):
            check_output_file(out, "--output", [None, "", "-", tmp_path / "missing", model])
    check_output_file(tmp_path / "next-to-it.json", "--output", [model])  # beside: fine


# --------------------------------------------------------------------------- writable


def test_check_functions_refuse_what_cannot_be_written(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "old.json").write_text("{}")
    no_write_under(monkeypatch, ro)
    for path in (ro, ro / "new", ro / "new" / "deeper"):
        with pytest.raises(UserError, match="not writable"):
            check_output_dir(path, "output_dir")
    for path in (ro / "r.json", ro / "old.json"):
        with pytest.raises(UserError, match="not writable"):
            check_output_file(path, "--output")
    check_output_dir(tmp_path / "fine", "output_dir")
    check_output_file(tmp_path / "fine.json", "--output")
    taken = tmp_path / "file"
    taken.write_text("keep me\n")
    for out in (taken / "out.json", taken / "sub" / "out.json"):
        with pytest.raises(UserError, match=f"lies under {taken}, which is a file"):
            check_output_file(out, "--output")


def test_read_only_output_file_is_refused(tmp_path, monkeypatch):
    kept = tmp_path / "kept.json"
    kept.write_text("{}")
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **k: m != os.W_OK if p == kept else real(p, m))
    with pytest.raises(UserError, match="is read-only"):
        check_output_file(kept, "--output")


@pytest.mark.parametrize("command", ["finetune", "task-distill", "general-distill"])
def test_training_into_an_unwritable_output_dir(
    command, tmp_path, tiny_bert_dir, sst2_dir, capsys, monkeypatch
):
    out = tmp_path / "out"
    (out / "student").mkdir(parents=True)  # a run someone else made: its stage folder theirs
    (out / "teacher").mkdir()
    (out / "general").mkdir()
    stage = {"finetune": "teacher", "task-distill": "student", "general-distill": "general"}
    no_write_under(monkeypatch, out / stage[command])
    args = [
        f"model={tiny_bert_dir}",
        f"teacher={tiny_bert_dir}",
        f"corpus.path={tmp_path}",
        f"output_dir={out}",
        *sst2_args(sst2_dir),
    ]
    assert main([command, *args]) == 2
    one_error(capsys, f"output_dir {out / stage[command]}", "not writable")


def test_predict_evaluate_export_benchmark_into_unwritable_folders(
    classifier, sst2_dir, tmp_path, capsys, monkeypatch
):
    def never(*args, **kwargs):
        raise AssertionError("the work ran before its output was checked")

    monkeypatch.setattr(evaluate_module, "run_evaluate", never)
    monkeypatch.setattr("tinybert.benchmark.run_benchmark", never)
    monkeypatch.setattr("tinybert.export.onnx.export_for_task", never)
    ro = tmp_path / "ro"
    ro.mkdir()
    no_write_under(monkeypatch, ro)
    runs = [
        ["predict", f"--model={classifier}", "-o", str(ro / "p.jsonl")],
        ["evaluate", *sst2_args(sst2_dir), f"--model={classifier}", f"--output={ro / 'r.json'}"],
        ["export", f"--model={classifier}", f"--output={ro / 'onnx'}"],
    ]
    for argv in runs:
        assert main(argv) == 2
        one_error(capsys, str(ro), "not writable")
    no_write_under(monkeypatch, classifier)  # evaluate's default output, speed.json
    for argv in (
        ["evaluate", *sst2_args(sst2_dir), f"--model={classifier}"],
        ["benchmark", *sst2_args(sst2_dir), f"--model={classifier}"],
    ):
        assert main(argv) == 2
        one_error(capsys, str(classifier), "not writable")


def test_a_file_where_a_folder_should_be(classifier, sst2_dir, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("keep me\n")
    runs = [
        ["predict", f"--model={classifier}", "-o", str(taken / "p.jsonl")],
        ["evaluate", *sst2_args(sst2_dir), f"--model={classifier}", f"--output={taken / 'r'}"],
        ["export", f"--model={classifier}", f"--output={taken / 'onnx'}"],
        ["report", str(tmp_path), f"--output={taken / 'report'}"],
    ]
    for argv in runs:
        assert main(argv) == 2
        one_error(capsys, str(taken), "is a file")
    assert taken.read_text() == "keep me\n"


@pytest.mark.skipif(AS_ROOT, reason="root writes into read-only folders")
def test_real_read_only_folder(classifier, sst2_dir, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        argv = ["evaluate", *sst2_args(sst2_dir), f"--model={classifier}"]
        assert main([*argv, f"--output={ro / 'r.json'}"]) == 2
        one_error(capsys, "not writable")
        assert main(["predict", f"--model={classifier}", "-o", str(ro / "p.jsonl")]) == 2
        one_error(capsys, "not writable")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


# --------------------------------------------------------------------------- umask


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_saved_weights_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        assert current_umask() == mask
        torch.manual_seed(0)
        save_model(BertModel(BertConfig(vocab_size=20, **TINY)), tmp_path / "m")
        for name in ("model.safetensors", "config.json"):
            assert mode_of(tmp_path / "m" / name) == 0o666 & ~mask, name
    finally:
        os.umask(old)


def test_follow_umask_without_proc(tmp_path, monkeypatch, umask):
    path = tmp_path / "f"
    path.write_bytes(b"")
    path.chmod(0o600)
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "no umask line here\n")
    follow_umask(path)
    assert mode_of(path) == 0o644
    assert current_umask() == 0o022  # read by setting it, and left as it was
