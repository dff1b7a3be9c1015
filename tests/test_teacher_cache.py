"""TD phase 1's teacher cache (distill/teacher_cache.py): the same losses as a live teacher, a
budget that refuses a cache too large (the run recomputes instead), a half-written or foreign
cache never read, and a resumed run that reuses the cache and matches an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import tinybert.distill.objectives as objectives
import tinybert.distill.teacher_cache as tc
from tinybert.cli import main
from tinybert.config import TaskConfig
from tinybert.data.task_data import load_task_data
from tinybert.model import load_model
from tinybert.train.distributed import Dist
from tinybert.train.loop import TrainData

from .conftest import TINY, write_sst2, write_tiny_bert
from .test_general import cli, finish

PHASE1 = "student/intermediate"
NO_DROPOUT = "student.dropout=0.0"  # DDP: the processes would draw different dropout masks


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A tiny SST-2 classifier as the teacher (random weights: its outputs are what matter)."""
    return write_tiny_bert(tmp_path_factory.mktemp("cache") / "teacher", num_labels=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_sst2(tmp_path_factory.mktemp("cache") / "SST-2", n_train=30, n_dev=8)


def td_args(teacher: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "task-distill",
        f"teacher={teacher}",
        f"output_dir={out}",
        f"task.data_dir={data}",
        "task.max_seq_length=16",
        "device=cpu",
        "distill.phases=[intermediate]",
        "student.num_hidden_layers=2",
        "student.hidden_size=16",
        "student.num_attention_heads=4",
        "student.intermediate_size=24",
        "intermediate.epochs=3",
        "intermediate.batch_size=8",  # 30 rows: batches of mixed lengths, a short last one
        "intermediate.log_steps=1",
        "intermediate.lr=1e-3",
        "intermediate.precision=fp32",  # no timing probe (precision=auto); a test may override
        *extra,
    ]


def losses(out: Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (out / PHASE1 / "metrics.jsonl").read_text().splitlines()]
    keys = ("loss", "att_loss", "hid_loss", "emb_loss")
    return [{k: r[k] for k in keys} for r in rows if "loss" in r]


def count_live_teacher(monkeypatch) -> list[int]:
    """Counts the steps whose loss ran the teacher (not the cache pass, which is another name)."""
    calls: list[int] = []
    real = objectives.teacher_forward

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(objectives, "teacher_forward", counted)
    return calls


def assert_same_run(a: Path, b: Path, tol: float) -> None:
    la, lb = losses(a), losses(b)
    assert len(la) == len(lb) == 12  # 3 epochs x 4 batches
    for x, y in zip(la, lb, strict=True):
        for k in x:
            assert y[k] == pytest.approx(x[k], rel=tol, abs=tol), (k, x, y)
    wa = load_file(a / PHASE1 / "final/model.safetensors")
    wb = load_file(b / PHASE1 / "final/model.safetensors")
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=tol, msg=k)


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=pytest.mark.slow)])
def test_cached_losses_equal_live_teacher(tmp_path, teacher, data, monkeypatch, capsys, precision):
    """Every step's four losses, and the weights after 3 epochs, equal a run that computes the
    teacher each step. Not bit for bit: the cache pass batches rows differently (by length)
    than training does, and a matmul over another shape may round its last bit differently;
    the teacher's outputs at real tokens are otherwise independent of padding (masked keys
    get probability exactly 0), and padded positions never reach the losses."""
    live, cached = tmp_path / "live", tmp_path / "cached"
    p = f"intermediate.precision={precision}"
    calls = count_live_teacher(monkeypatch)
    assert main(td_args(teacher, data, live, p, "intermediate.teacher_cache_gb=0")) == 0
    assert len(calls) == 12
    capsys.readouterr()
    assert main(td_args(teacher, data, cached, p)) == 0
    out = capsys.readouterr().out
    assert "phase 1: caching the teacher's outputs" in out
    assert len(calls) == 12  # the cached run never ran the teacher in a step
    assert not (cached / PHASE1 / tc.CACHE_DIR).exists()  # removed when phase 1 finished
    # Measured: bf16 equal bit for bit, fp32 weights within 4e-9 after 12 Adam steps.
    assert_same_run(live, cached, 1e-6)


def test_budget_too_small_falls_back_to_the_live_teacher(tmp_path, teacher, data, capsys):
    out = tmp_path / "run"
    assert main(td_args(teacher, data, out, "intermediate.teacher_cache_gb=1e-9")) == 0
    printed = capsys.readouterr().out
    assert "over intermediate.teacher_cache_gb=1e-09" in printed
    assert "computing the teacher at every step instead" in printed
    assert not (out / PHASE1 / tc.CACHE_DIR).exists()
    assert len(losses(out)) == 12


def test_one_epoch_and_reference_mode_do_not_cache(tmp_path, teacher, data, capsys):
    assert main(td_args(teacher, data, tmp_path / "a", "intermediate.epochs=1")) == 0
    assert "sees each training row at most once" in capsys.readouterr().out
    ref = td_args(teacher, data, tmp_path / "b", "distill.loss_mode=reference")
    assert main(ref) == 0
    assert "distill.loss_mode=reference averages over padded positions" in capsys.readouterr().out


def plan_for(teacher: Path, data: Path, folder: Path, **changes) -> tuple[tc.CachePlan, object]:
    model, _ = load_model(str(teacher), head="sequence")
    model.eval()
    task = load_task_data(TaskConfig(data_dir=str(data), max_seq_length=16), teacher, 42)
    plan = tc.CachePlan(
        folder=folder,
        budget_gb=1.0,
        fingerprint={"teacher": "t", "data": "d", "layer_map": [1, 2], "attention": True},
        data=TrainData.of_task(task),
        batch_size=8,
        device=torch.device("cpu"),
        precision="fp32",
        dist=Dist(),
    )
    for key, value in changes.items():
        object.__setattr__(plan, key, value)
    return plan, model


def count_builds(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = tc._write_shard

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tc, "_write_shard", counted)
    return calls


def test_cache_reads_back_what_the_teacher_gives(tmp_path, teacher, data):
    plan, model = plan_for(teacher, data, tmp_path)
    cache = tc.open_or_build(model, plan, [1, 2], want_att=True)
    assert cache is not None
    rows = [3, 0, 17, 29]
    batch = plan.data.collate(rows)
    live = tc.teacher_forward(model, batch, want_att=True)
    got = cache.outputs(rows, batch["input_ids"].shape[1], torch.device("cpu"))
    real = batch["attention_mask"].bool()
    both = (real[:, :, None] & real[:, None, :])[:, None].expand(
        -1, TINY["num_attention_heads"], -1, -1
    )
    pad_keys = (real[:, :, None] & ~real[:, None, :])[:, None].expand_as(both)
    for j in (0, 1):
        torch.testing.assert_close(got.attention_scores[j][both], live.attention_scores[j][both])
        # padding keys read back masked, as the live teacher masks them (finfo.min)
        assert torch.equal(got.attention_scores[j][pad_keys], live.attention_scores[j][pad_keys])
    for j in (0, 1, 2):
        torch.testing.assert_close(got.hidden_states[j][real], live.hidden_states[j][real])
        assert not got.hidden_states[j][~real].any()  # padding: zeros


@pytest.mark.parametrize(
    "damage", ["no manifest", "truncated shard", "other precision", "leftover tmp only"]
)
def test_half_written_or_foreign_cache_is_rebuilt(tmp_path, teacher, data, monkeypatch, damage):
    plan, model = plan_for(teacher, data, tmp_path)
    builds = count_builds(monkeypatch)
    assert tc.open_or_build(model, plan, [1, 2], want_att=True) is not None
    folder = tmp_path / tc.CACHE_DIR
    assert tc.open_or_build(model, plan, [1, 2], want_att=True) is not None
    assert len(builds) == 1  # whole and made for this run: reused
    if damage == "no manifest":  # killed before the manifest was written
        (folder / tc.MANIFEST).unlink()
    elif damage == "truncated shard":
        with open(folder / "att-0.bin", "r+b") as f:
            f.truncate(100)
    elif damage == "other precision":
        plan, _ = plan_for(teacher, data, tmp_path, precision="bf16")
    else:  # killed while writing: only teacher_cache.tmp exists
        os.replace(folder, folder.with_name(tc.CACHE_DIR + ".tmp"))
        (folder.with_name(tc.CACHE_DIR + ".tmp") / tc.MANIFEST).unlink()
    cache = tc.open_or_build(model, plan, [1, 2], want_att=True)
    assert len(builds) == 2 and cache is not None
    assert not folder.with_name(tc.CACHE_DIR + ".tmp").exists()
    saved = json.loads((folder / tc.MANIFEST).read_text())
    assert saved["precision"] == plan.precision
    sizes = [(folder / f).stat().st_size for f in ("att-0.bin", "hid-0.bin")]
    assert sum(sizes) == tc.cache_size(cache.layout, np.asarray(plan.data.lengths))


def test_resume_reuses_the_cache_and_matches_an_uninterrupted_run(
    tmp_path, teacher, data, monkeypatch, capsys
):
    """SIGTERM after step 5 stops at the step boundary with checkpoint-5 saved and the cache
    kept; resume=auto reads the cache (no second pass) and ends with the same weights."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(td_args(teacher, data, whole)) == 0
    builds = count_builds(monkeypatch)
    real_call = objectives.IntermediateLoss.__call__
    steps: list[int] = []

    def call(self, batch):
        steps.append(1)
        if len(steps) == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # the loop saves step 5 and stops
        return real_call(self, batch)

    monkeypatch.setattr(objectives.IntermediateLoss, "__call__", call)
    assert main(td_args(teacher, data, cut)) != 0
    assert (cut / PHASE1 / "checkpoint-5").is_dir()
    assert (cut / PHASE1 / tc.CACHE_DIR / tc.MANIFEST).is_file()
    monkeypatch.setattr(objectives.IntermediateLoss, "__call__", real_call)
    capsys.readouterr()
    assert main(td_args(teacher, data, cut, "resume=auto")) == 0
    assert "reading the teacher's outputs from the cache" in capsys.readouterr().out
    assert len(builds) == 1
    assert_same_run(whole, cut, 1e-6)


@pytest.mark.slow  # DDP, two processes
def test_two_processes_cache_their_shards_and_equal_one_process(tmp_path, teacher, data):
    """DDP (2 processes, gloo): each process writes its own shard (rows rank, rank + 2, ...),
    both read every shard, and the weights equal one process's run without a cache."""
    one, two = tmp_path / "one", tmp_path / "two"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the torchrun children (OMP_NUM_THREADS=1): same sum order
    try:
        args = td_args(teacher, data, one, "intermediate.teacher_cache_gb=0", NO_DROPOUT)
        assert main(args) == 0
    finally:
        torch.set_num_threads(before)
    out = finish(cli(*td_args(teacher, data, two, NO_DROPOUT), torchrun=2))
    assert "teacher cache: process 0 wrote 15 of 30 rows" in out
    assert "teacher cache: process 1 wrote 15 of 30 rows" in out
    wa = load_file(one / PHASE1 / "final/model.safetensors")
    wb = load_file(two / PHASE1 / "final/model.safetensors")
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-6, msg=k)
    assert not (two / PHASE1 / tc.CACHE_DIR).exists()
