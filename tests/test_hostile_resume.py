"""Hostile-user cases from issue 16: resume must not lie.

A resume is refused when the training data changed in any row (a flipped label, an edited
sentence), not only in its row count or lengths; a fresh run starts a fresh metrics.jsonl; a
distill.phases list other than the three meaningful ones is refused at config load; phase 2
alone is refused while phase 1 of the same folder runs elsewhere; and a task.max_seq_length (or
a corpus) longer than a model's position table is refused before any work.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tinybert.cli import main
from tinybert.config import TaskConfig
from tinybert.data.corpus import PackingOptions, open_corpus, prepare_corpus
from tinybert.data.task_data import load_task_data
from tinybert.recipes.general_distill import corpus_content
from tinybert.train.loop import TrainData
from tinybert.train.resume import HASH_ROWS, data_fingerprint

from .conftest import write_sst2, write_tiny_bert, write_vocab


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("hostile") / "tiny-bert")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A tiny classifier for SST-2 as task-distill's teacher (its head counts as trained)."""
    return write_tiny_bert(tmp_path_factory.mktemp("hostile") / "teacher", num_labels=2)


def ft_args(bert: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"model={bert}",
        f"output_dir={out}",
        f"task.data_dir={data}",
        "task.max_seq_length=16",
        "device=cpu",
        "finetune.batch_size=8",
        "finetune.max_steps=4",
        "finetune.save_steps=2",
        "finetune.eval_steps=4",
        "finetune.log_steps=1",
        *extra,
    ]


def one_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def flip_labels(tsv: Path, rows: list[int]) -> None:
    """Flip the labels of some rows in place: as many rows, the same sentences and lengths."""
    lines = tsv.read_text().splitlines()
    for i in rows:
        text, label = lines[i + 1].rsplit("\t", 1)
        lines[i + 1] = f"{text}\t{1 - int(label)}"
    tsv.write_text("\n".join(lines) + "\n")


def edit_sentence(tsv: Path, row: int) -> None:
    """Swap one word of a sentence for another of the same token count (lengths unchanged)."""
    lines = tsv.read_text().splitlines()
    text, label = lines[row + 1].rsplit("\t", 1)
    words = text.split()
    words[0] = "plot" if words[0] != "plot" else "film"
    lines[row + 1] = f"{' '.join(words)}\t{label}"
    tsv.write_text("\n".join(lines) + "\n")


def fingerprint(bert: Path, data: Path) -> str:
    loaded = load_task_data(
        TaskConfig(name="sst2", data_dir=str(data), max_seq_length=16), bert, 42
    )
    train = TrainData.of_task(loaded)
    return data_fingerprint(np.asarray(train.lengths), train.collate, train.content)


# --------------------------------------------------------------------------- the data hash


def test_the_data_fingerprint_covers_every_label_and_sentence(bert, tmp_path):
    data = write_sst2(tmp_path / "SST-2", n_train=300)
    tsv = data / "train.tsv"
    original = tsv.read_text()
    before = fingerprint(bert, data)
    assert before.startswith("300 rows, sha256 ")
    assert fingerprint(bert, data) == before  # unchanged data: the same hash
    flip_labels(tsv, list(range(101, 300, 10)))  # 20 of 300 labels, in place
    assert fingerprint(bert, data) != before
    tsv.write_text(original)
    edit_sentence(tsv, 151)  # one word of one sentence
    assert fingerprint(bert, data) != before
    tsv.write_text(original)
    assert fingerprint(bert, data) == before


def test_without_a_content_stream_every_row_is_hashed():
    rows = HASH_ROWS + 5  # more than one piece
    x = torch.arange(rows * 2).reshape(rows, 2)
    y = torch.zeros(rows, dtype=torch.long)

    def collate(idx: list[int]) -> dict[str, torch.Tensor]:
        return {"x": x[idx], "y": y[idx]}

    lengths = np.full(rows, 2)
    before = data_fingerprint(lengths, collate)
    assert data_fingerprint(lengths, collate) == before
    y[rows - 1] = 1  # the last row's label, in the second piece
    assert data_fingerprint(lengths, collate) != before


def test_a_prepared_corpus_is_hashed_in_full(tmp_path, corpus_file):
    vocab = write_vocab(tmp_path / "vocab")
    out = tmp_path / "prepared"
    prepare_corpus([str(corpus_file)], vocab, out, PackingOptions(max_seq_length=32), False)
    corpus = open_corpus(out, vocab)
    n = len(corpus)

    def digest(rows: int) -> str:
        return data_fingerprint(
            corpus.lengths[:rows], corpus.collate, lambda: corpus_content(corpus, rows)
        )

    before, first = digest(n), digest(n - 1)
    assert before != first  # max_sequences: only the rows trained on
    ids = out / corpus.meta["shards"][0]["ids"]
    raw = bytearray(ids.read_bytes())
    raw[-64] ^= 1  # one token id of the last row, in place
    ids.write_bytes(bytes(raw))
    assert digest(n) != before
    assert digest(n - 1) == first


def test_resume_on_changed_data_is_refused_and_unchanged_data_resumes(bert, tmp_path, capsys):
    data = write_sst2(tmp_path / "SST-2")
    tsv = data / "train.tsv"
    original = tsv.read_text()
    args = ft_args(bert, data, tmp_path / "out")
    assert main(["finetune", *args]) == 0
    stage = tmp_path / "out/teacher"
    shutil.rmtree(stage / "final")  # as if killed after step 2's checkpoint
    shutil.rmtree(stage / "checkpoint-4")
    flip_labels(tsv, [3, 17, 30])
    capsys.readouterr()
    assert main(["finetune", *args, "resume=auto"]) == 2
    one_error(
        capsys,
        "training data changed since the checkpoint",
        str(stage / "checkpoint-2"),
        "saved '48 rows, sha256 ",
    )
    tsv.write_text(original)
    edit_sentence(tsv, 5)
    assert main(["finetune", *args, "resume=auto"]) == 2  # an edited sentence: refused too
    one_error(capsys, "training data changed since the checkpoint")
    tsv.write_text(original)  # put back: resumes
    assert main(["finetune", *args, "resume=auto"]) == 0
    assert f"resumed from {stage / 'checkpoint-2'} at step 2" in capsys.readouterr().out


# --------------------------------------------------------------------------- a fresh log


def test_a_fresh_run_starts_a_fresh_metrics_log(bert, tmp_path):
    data = write_sst2(tmp_path / "SST-2")
    stage = tmp_path / "out/teacher"
    stage.mkdir(parents=True)
    # a run killed before its first checkpoint: rows, no checkpoint
    stale = [{"step": 1, "loss": 9.0}, {"step": 2, "loss": 8.0}]
    (stage / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in stale) + "\n")
    for resume in ([], ["resume=auto"]):  # no checkpoint to resume: both start afresh
        assert main(["finetune", *ft_args(bert, data, tmp_path / "out"), *resume]) == 0
        rows = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
        assert all(r.get("loss") not in (8.0, 9.0) for r in rows)
        assert sum(bool(r.get("done")) for r in rows) == 1
        shutil.rmtree(stage)
        stage.mkdir()
        (stage / "metrics.jsonl").write_text(json.dumps(stale[0]) + "\n")


# --------------------------------------------------------------------------- distill.phases


@pytest.mark.parametrize(
    "phases",
    ["[prediction,intermediate]", "[intermediate,intermediate]", "[]", "[prediction,prediction]"],
)
def test_phases_other_than_the_three_are_refused_at_load(phases, capsys):
    assert main(["task-distill", "teacher=t", "task.name=sst2", f"distill.phases={phases}"]) == 2
    one_error(
        capsys,
        "distill.phases",
        "must be one of [intermediate], [prediction], [intermediate, prediction]",
    )


def test_phase_two_alone_is_refused_while_phase_one_runs(teacher, tmp_path, capsys):
    data = write_sst2(tmp_path / "SST-2")
    phase1 = tmp_path / "out/student/intermediate"
    phase1.mkdir(parents=True)
    fd = os.open(phase1 / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running phase 1 holds it
        os.write(fd, json.dumps({"pid": 4242, "host": "gpu-7", "since": "then"}).encode())
        args = [f"teacher={teacher}", f"output_dir={tmp_path / 'out'}", f"task.data_dir={data}"]
        assert main(["task-distill", *args, "distill.phases=[prediction]", "device=cpu"]) == 2
        one_error(capsys, f"{phase1} is in use by process 4242")
        assert not (tmp_path / "out/student/prediction").exists()  # nothing written
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- positions


def test_a_max_seq_length_past_the_positions_is_refused_at_start(bert, teacher, tmp_path, capsys):
    data = write_sst2(tmp_path / "SST-2")
    long = "task.max_seq_length=1000"  # the tiny models have 64 positions
    assert main(["finetune", *ft_args(bert, data, tmp_path / "ft"), long]) == 2
    one_error(
        capsys,
        f"model {bert}: task.max_seq_length 1000 is longer than the model's "
        "max_position_embeddings (64)",
    )
    assert not (tmp_path / "ft/teacher/metrics.jsonl").exists()
    td = [f"teacher={teacher}", f"output_dir={tmp_path / 'td'}", f"task.data_dir={data}"]
    assert main(["task-distill", *td, "device=cpu", long]) == 2
    one_error(capsys, f"teacher {teacher}: task.max_seq_length 1000", "(64)")
    assert not (tmp_path / "td/student/intermediate/metrics.jsonl").exists()


def test_a_corpus_longer_than_the_positions_is_refused_at_start(
    bert, tmp_path, corpus_file, capsys
):
    prepared = tmp_path / "prepared"
    opts = PackingOptions(max_seq_length=128)  # rows of up to 128 tokens; the teacher has 64
    prepare_corpus([str(corpus_file)], bert, prepared, opts, False)
    args = [f"teacher={bert}", f"corpus.path={prepared}", f"output_dir={tmp_path / 'gd'}"]
    assert main(["general-distill", *args, "device=cpu"]) == 2
    one_error(
        capsys,
        f"corpus.path {prepared}: sequences of up to ",
        "max_position_embeddings (64)",
        "--max-seq-length 64",
    )
    assert not (tmp_path / "gd/general/metrics.jsonl").exists()
