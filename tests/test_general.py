"""General distillation end to end: CLI run, TD from the GD student, exact resume after SIGKILL,
and DDP (2 processes, gloo) equal to one process with the same global batch."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tinybert.cli import main
from tinybert.data.corpus import PackingOptions, prepare_corpus
from tinybert.train.checkpoint import load_state

from .conftest import TINY, pausing_command, wait_until_paused

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def corpus_dir(tmp_path, tiny_bert_dir, corpus_file) -> Path:
    out = tmp_path / "prepared"
    prepare_corpus([str(corpus_file)], tiny_bert_dir, out, PackingOptions(max_seq_length=24))
    return out


def gd_args(out: Path, teacher: Path, corpus: Path, *extra: str) -> list[str]:
    return [
        f"teacher={teacher}",
        f"corpus.path={corpus}",
        f"output_dir={out}",
        "device=cpu",
        "student.num_hidden_layers=1",
        "student.hidden_size=16",
        f"student.num_attention_heads={TINY['num_attention_heads']}",
        "student.intermediate_size=24",
        "general.batch_size=5",
        "general.lr=1e-3",
        "general.log_steps=1",
        *extra,
    ]


def weights(run: Path) -> dict[str, torch.Tensor]:
    final = run / "general/final"
    state = load_state(final)["extra"]  # the hidden-state projection is trained too
    return {**load_file(final / "model.safetensors"), **{f"proj.{k}": v for k, v in state.items()}}


def cli(
    *args: str, torchrun: int = 0, pause_after: Path | None = None, **popen
) -> subprocess.Popen:
    """`python -m tinybert *args` (under torchrun with `torchrun` processes), its stderr merged
    into its stdout; with `pause_after`, it pauses once it has written that checkpoint (see
    conftest.pausing_command)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    launcher = [sys.executable, "-m", "tinybert"]
    if pause_after is not None:
        launcher = pausing_command(pause_after)
    if torchrun:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={torchrun}",
            "--standalone",
            "-m",
            "tinybert",
        ]
    return subprocess.Popen(
        [*launcher, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen
    )


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run in this process with one thread, as the children do (OMP_NUM_THREADS=1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def finish(proc: subprocess.Popen) -> str:
    out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, out
    return out


def test_general_distill_then_task_distill_from_it(
    tmp_path, tiny_bert_dir, corpus_dir, sst2_dir, capsys
):
    out = tmp_path / "run"
    assert (
        main(["general-distill", *gd_args(out, tiny_bert_dir, corpus_dir, "general.epochs=2")]) == 0
    )
    final = out / "general/final"
    assert (final / "model.safetensors").is_file() and (final / "vocab.txt").is_file()
    log = [line for line in (out / "general/metrics.jsonl").read_text().splitlines()]
    assert '"att_loss"' in log[0] and '"tokens_per_s"' in log[0]

    # Task distillation starts from the GD student (its missing pooler/head are initialised).
    teacher_args = [
        f"model={tiny_bert_dir}",
        f"output_dir={out}",
        f"task.data_dir={sst2_dir}",
        "task.max_seq_length=16",
        "finetune.epochs=1",
    ]
    assert main(["finetune", *teacher_args]) == 0
    td = [
        *teacher_args,
        f"teacher={out / 'teacher/best'}",
        "student.init=checkpoint",
        f"student.path={final}",
        "intermediate.epochs=1",
        "prediction.epochs=1",
    ]
    capsys.readouterr()
    assert main(["task-distill", *td]) == 0
    # GD trains no pooler and no classifier: those are the only weights initialised anew.
    said = capsys.readouterr().out
    assert f"{final}: newly initialised (not in the checkpoint): bert.pooler" in said
    assert "classifier.weight" in said and "embeddings" not in said.split("newly initialised")[1]


def test_general_distill_vocabulary_and_precision_errors(
    tmp_path, tiny_bert_dir, corpus_dir, capsys
):
    other = tmp_path / "other-vocab"
    other.mkdir()
    (other / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nzebra\n")
    args = gd_args(tmp_path / "x", tiny_bert_dir, corpus_dir, "general.max_steps=1")
    assert main(["general-distill", *args, f"teacher={other}"]) == 2
    assert "was tokenised with another vocabulary" in capsys.readouterr().err
    assert main(["general-distill", *args, "general.precision=fp16"]) == 2
    assert "fp16 needs a CUDA GPU" in capsys.readouterr().err
    assert main(["general-distill", *args, "corpus.path="]) == 2
    assert "corpus.path" in capsys.readouterr().err


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, tiny_bert_dir, corpus_dir, capsys):
    args = gd_args(
        tmp_path, tiny_bert_dir, corpus_dir, "general.max_steps=20", "general.save_steps=10"
    )
    whole = tmp_path / "whole"
    with one_thread():  # as the child (OMP_NUM_THREADS=1): the same float sums
        assert main(["general-distill", *args, f"output_dir={whole}"]) == 0

    # Killed at a known point: paused right after writing checkpoint-10 (before the rotation
    # and step 11), however fast the machine.
    killed = tmp_path / "killed"
    first = killed / "general/checkpoint-10"
    proc = cli("general-distill", *args, f"output_dir={killed}", pause_after=first)
    assert proc.stdout is not None
    try:
        wait_until_paused(proc.stdout)
    finally:
        proc.send_signal(signal.SIGKILL)  # paused, or (the test failing) whatever it does
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert first.is_dir() and not (killed / "general/final").exists()

    capsys.readouterr()
    with one_thread():
        assert main(["general-distill", *args, f"output_dir={killed}", "resume=auto"]) == 0
    assert "resumed from" in capsys.readouterr().out
    a, b = weights(whole), weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # bit for bit


@pytest.mark.slow  # DDP, two processes
def test_two_process_ddp_equals_one_process_and_resumes_across_world_sizes(
    tmp_path, tiny_bert_dir, corpus_dir
):
    # Uneven slices (5 rows over 2 processes), varied lengths (padding), accumulation (no_sync),
    # and a last batch of 1 row (41 = 8 * 5 + 1) that leaves process 1 nothing: the global-count
    # normalisation must make every case exact.
    args = gd_args(
        tmp_path,
        tiny_bert_dir,
        corpus_dir,
        "corpus.max_sequences=41",
        "general.epochs=1",
        "general.grad_accum=2",
        "general.save_steps=2",
        "student.dropout=0.0",  # dropout masks differ per process by design
    )
    one, two = tmp_path / "one", tmp_path / "two"
    finish(cli("general-distill", *args, f"output_dir={one}"))
    out = finish(cli("general-distill", *args, f"output_dir={two}", torchrun=2))
    assert "2 process(es)" in out
    a, b = weights(one), weights(two)
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=0)

    # A checkpoint written by one process resumes under two and ends where one process does.
    resumed = tmp_path / "resumed/general"
    resumed.mkdir(parents=True)
    shutil.copytree(one / "general/checkpoint-2", resumed / "checkpoint-2")
    out = finish(
        cli("general-distill", *args, f"output_dir={resumed.parent}", "resume=auto", torchrun=2)
    )
    assert "resumed from" in out and "at step 2" in out
    c = weights(resumed.parent)
    for key in a:
        torch.testing.assert_close(c[key], a[key], atol=1e-6, rtol=0)
