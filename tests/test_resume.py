"""Resume never lies: signals stop at a step boundary with that step saved; a resume checks its
settings and data; a path resumes its own stage; diverged runs write no bad weights; one process
per stage folder; metrics.jsonl without repeats; plain progress lines off a terminal; leftovers
of a kill are cleaned up."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tinybert.cli import main
from tinybert.distill import objectives
from tinybert.errors import UserError
from tinybert.train import checkpoint as ckpt
from tinybert.train import progress as progress_module
from tinybert.train.health import WEIGHT_LIMIT
from tinybert.train.loop import Trainer
from tinybert.train.progress import Progress

from .conftest import TINY, sst2_rows, write_sst2, write_vocab

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A tiny BERT (dropout 0.1, so the RNG state matters) and a tiny SST-2, once per module."""
    from tinybert.model import BertConfig, BertModel, save_model

    base = tmp_path_factory.mktemp("resume")
    bert = write_vocab(base / "tiny-bert")
    torch.manual_seed(0)
    vocab_size = len((bert / "vocab.txt").read_text().split())
    save_model(BertModel(BertConfig(vocab_size=vocab_size, **TINY)), bert, tokenizer_dir=bert)
    return {"base": base, "bert": bert, "sst2": write_sst2(base / "SST-2")}


def ft_args(inputs: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        f"model={inputs['bert']}",
        f"output_dir={out}",
        f"task.data_dir={inputs['sst2']}",
        "task.max_seq_length=16",
        "device=cpu",
        "finetune.batch_size=8",
        "finetune.lr=3e-3",
        "finetune.max_steps=6",
        "finetune.save_steps=3",
        "finetune.eval_steps=3",
        "finetune.log_steps=1",
        *extra,
    ]


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    one, two = weights(a), weights(b)
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key  # bit for bit


def one_error(capsys, *needles: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, captured.err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def entries(stage: Path) -> set[str]:
    return {p.name for p in stage.iterdir()}


# --------------------------------------------------------------------------- 1. signals

# The child runs the CLI with each loss call slowed by 20 ms, so that the test can signal it
# well before it ends; the sleep touches no RNG, so the weights are those of a plain run.
CHILD = """
import sys, time
import torch
torch.set_num_threads(int(sys.argv.pop(1)))  # the test process's: the same float sums
from tinybert.distill import objectives
real = objectives.SupervisedLoss.__call__
def slow(self, batch):
    time.sleep(0.02)
    return real(self, batch)
objectives.SupervisedLoss.__call__ = slow
from tinybert.cli import main
sys.exit(main(sys.argv[1:]))
"""
TOTAL = 24
LONG = (f"finetune.max_steps={TOTAL}", "finetune.save_steps=7", "finetune.eval_steps=10")


@pytest.fixture(scope="module")
def uninterrupted(inputs) -> Path:
    out = inputs["base"] / "uninterrupted"
    assert main(["finetune", *ft_args(inputs, out, *LONG)]) == 0
    return out / "teacher"


def start_child(inputs, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(torch.get_num_threads()), "finetune"]
        + ft_args(inputs, out, *LONG),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def logged_steps(stage: Path) -> int:
    try:
        return sum('"loss"' in line for line in (stage / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def signal_after(children: list[tuple[subprocess.Popen, Path, int, int]]) -> None:
    """Send each child its signal once its metrics.jsonl shows `after` steps."""
    waiting = list(children)
    deadline = time.monotonic() + 60
    while waiting and time.monotonic() < deadline:
        for child in list(waiting):
            proc, stage, after, signum = child
            if logged_steps(stage) >= after or proc.poll() is not None:
                proc.send_signal(signum)
                waiting.remove(child)
        time.sleep(0.002)
    assert not waiting, "the children never got going"


def check_stopped(proc: subprocess.Popen, stage: Path, signum: int) -> int:
    """The child stopped at a step boundary with exit 128 + signal, one error line naming the
    checkpoint it saved, nothing half-written; returns the step."""
    out, err = (s.decode() for s in proc.communicate(timeout=60))
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert last.startswith(f"error: finetune: stopped by {name} at step "), err
    step = int(last.split(" at step ")[1].split()[0])
    assert 0 < step < TOTAL and f"saved in {stage / f'checkpoint-{step}'}" in last
    assert "resume=auto" in last
    assert not (stage / "final").exists()
    assert all(not n.endswith((".tmp", ".old", ".deleting")) for n in entries(stage))
    assert (stage / f"checkpoint-{step}" / ckpt.STATE_FILE).is_file()
    return step


@pytest.mark.parametrize(
    ("signum", "moments"),
    [
        pytest.param(signal.SIGINT, (3, 12), id="INT", marks=pytest.mark.slow),  # two children
        pytest.param(signal.SIGTERM, (7,), id="TERM"),
    ],
)
def test_signal_stops_at_a_step_boundary_and_resume_is_exact(
    inputs, uninterrupted, signum, moments
):
    """Runs get the signal at different moments (mid-step, as it falls: after 3, 7 or 12 steps
    are logged); each stops after that step with it saved, and resume=auto then ends bit for
    bit where a run that never stopped ends (dropout on: the RNG state must be the step
    boundary's too)."""
    runs = [inputs["base"] / f"{signum.name}-{after}" for after in moments]
    children = [(start_child(inputs, out), out / "teacher") for out in runs]
    signal_after(
        [
            (proc, stage, after, signum)
            for (proc, stage), after in zip(children, moments, strict=True)
        ]
    )
    for (proc, stage), out in zip(children, runs, strict=True):
        step = check_stopped(proc, stage, signum)
        assert main(["finetune", *ft_args(inputs, out, *LONG), "resume=auto"]) == 0
        assert_same_weights(uninterrupted / "final", stage / "final")
        rows = [r for r in read_jsonl(stage / "metrics.jsonl") if "loss" in r]
        assert [r["step"] for r in rows] == list(range(1, TOTAL + 1))  # each once
        assert {"step": step, "resumed_from": step} in read_jsonl(stage / "metrics.jsonl")


@pytest.mark.slow  # DDP, two processes
def test_under_torchrun_every_process_stops_at_the_same_step(inputs, tmp_path):
    """SIGTERM to process 1 alone: both processes stop after the same step (the flag is
    all-reduced at step boundaries), and process 0 saves it."""
    script, pids, out = tmp_path / "child.py", tmp_path / "pids", tmp_path / "ddp"
    pids.mkdir()
    # each process leaves its pid where the test finds it, then runs the slowed CLI
    script.write_text(
        "import os, pathlib, sys\n"
        "folder = pathlib.Path(sys.argv.pop(1))\n"
        "(folder / os.environ['RANK']).write_text(str(os.getpid()))\n"
        "sys.argv.insert(1, '1')\n" + CHILD
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]
    proc = subprocess.Popen(
        [*launcher, "--standalone", str(script), str(pids), "finetune"]
        + ft_args(inputs, out, *LONG),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    stage = out / "teacher"
    deadline = time.monotonic() + 60
    while logged_steps(stage) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(int((pids / "1").read_text()), signal.SIGTERM)
    said = proc.communicate(timeout=60)[0].decode()
    # Both processes print the line; their writes may land on one line of the merged output.
    stops = re.findall(r"error: finetune: stopped by SIGTERM at step \d+ of \d+", said)
    assert len(stops) == 2 and stops[0] == stops[1], said
    step = int(stops[0].split(" at step ")[1].split()[0])
    assert 4 <= step < TOTAL and (stage / f"checkpoint-{step}" / ckpt.STATE_FILE).is_file()
    assert not (stage / "final").exists()


def test_repeated_ctrl_c_while_saving_is_ignored(inputs, uninterrupted, capsys):
    """In-process and deterministic: Ctrl-C in step 9, then twice more while checkpoint-9 is
    being written. The write finishes whole, the handlers come back, and resume is exact."""
    out = inputs["base"] / "ctrl-c-thrice"
    args = ft_args(inputs, out, *LONG)
    calls = {"loss": 0, "saves": 0}
    real_loss, real_save = objectives.SupervisedLoss.__call__, ckpt.save_state

    def loss(self, batch):
        calls["loss"] += 1
        if calls["loss"] == 9:
            os.kill(os.getpid(), signal.SIGINT)  # lands mid-step, like a real Ctrl-C
        return real_loss(self, batch)

    def save(directory, state):
        if state["position"]["step"] == 9:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        calls["saves"] += 1
        real_save(directory, state)

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    objectives.SupervisedLoss.__call__, ckpt.save_state = loss, save
    try:
        assert main(["finetune", *args]) == 130
    finally:
        objectives.SupervisedLoss.__call__, ckpt.save_state = real_loss, real_save
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    err = capsys.readouterr().err
    assert "already stopping" not in err and "writing a checkpoint; it finishes first" in err
    assert f"stopped by SIGINT at step 9 of {TOTAL}; saved in {out / 'teacher/checkpoint-9'}" in err
    assert [p.name for p in ckpt.step_checkpoints(out / "teacher")] == [
        "checkpoint-7",
        "checkpoint-9",
    ]
    assert main(["finetune", *args, "resume=auto"]) == 0
    assert_same_weights(uninterrupted / "final", out / "teacher/final")


# --------------------------------------------------------------------------- 1b. leftovers


def test_rotation_renames_before_deleting(tmp_path, monkeypatch):
    """A kill in the middle of deleting an old checkpoint leaves it under another name, never a
    half-deleted `checkpoint-N`; the next stage start removes it."""
    for step in (5, 10, 15):
        ckpt.write_atomic(tmp_path / f"checkpoint-{step}", lambda d: ckpt.save_state(d, {}))
    (tmp_path / "checkpoint-5" / "model.safetensors").write_bytes(b"weights")
    real_rmtree = shutil.rmtree

    def killed(path, *args, **kwargs):
        if Path(path).name.startswith("checkpoint-5") and Path(path).exists():
            (Path(path) / ckpt.STATE_FILE).unlink()  # half deleted...
            raise KeyboardInterrupt  # ...when the process is killed
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.rotate(tmp_path, keep=2)
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert not (tmp_path / "checkpoint-5").exists()
    assert (tmp_path / "checkpoint-5.deleting").is_dir()
    assert ckpt.clean_leftovers(tmp_path) == ["checkpoint-5.deleting"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-15"]


def test_leftovers_of_a_kill_are_cleaned_or_restored(tmp_path):
    def folder(name: str, state: bool = True) -> Path:
        path = tmp_path / name
        path.mkdir()
        if state:
            ckpt.save_state(path, {"name": name})
        return path

    folder("checkpoint-3")
    folder("checkpoint-6.tmp")  # a write cut short
    folder("checkpoint-25", state=False)  # half deleted by an older version
    folder("final.old")  # killed between write_atomic's two renames: final is missing
    folder("best")
    folder("best.old")  # the old best, its replacement already in place
    (tmp_path / "metrics.jsonl.tmp").write_text("{}")
    removed = ckpt.clean_leftovers(tmp_path)
    assert sorted(removed) == sorted(
        ["checkpoint-6.tmp", "checkpoint-25", "final.old", "best.old", "metrics.jsonl.tmp"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "checkpoint-3", "final"]
    assert ckpt.load_state(tmp_path / "final") == {"name": "final.old"}
    # write_atomic itself puts back a lone X.old before writing
    os.replace(tmp_path / "best", tmp_path / "best.old")
    ckpt.write_atomic(tmp_path / "best", lambda d: ckpt.save_state(d, {"name": "new"}))
    assert ckpt.load_state(tmp_path / "best") == {"name": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "checkpoint-3", "final"]


def test_a_stage_start_cleans_leftovers(inputs, tmp_path):
    args = ft_args(inputs, tmp_path / "out")
    assert main(["finetune", *args]) == 0
    stage = tmp_path / "out/teacher"
    (stage / "checkpoint-25").mkdir()  # no state file
    shutil.copytree(stage / "checkpoint-3", stage / "checkpoint-3.deleting")
    shutil.copytree(stage / "final", stage / "final.tmp")
    assert main(["finetune", *args, "resume=auto"]) == 0  # finished: skipped, but cleaned
    assert entries(stage) == {
        ".lock",
        "best",
        "checkpoint-3",
        "checkpoint-6",
        "config.yaml",
        "final",
        "metrics.jsonl",
    }


# --------------------------------------------------------------------------- 2. resume=<path>


@pytest.fixture(scope="module")
def teacher(inputs) -> Path:
    out = inputs["base"] / "teacher-run"
    assert main(["finetune", *ft_args(inputs, out, "finetune.max_steps=2")]) == 0
    return out / "teacher/final"


def td_args(inputs, teacher: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"teacher={teacher}",
        f"output_dir={out}",
        f"task.data_dir={inputs['sst2']}",
        "task.max_seq_length=16",
        "device=cpu",
        "student.num_hidden_layers=1",
        "student.hidden_size=16",
        f"student.num_attention_heads={TINY['num_attention_heads']}",
        "student.intermediate_size=24",
        *[f"{phase}.{k}" for phase in ("intermediate", "prediction") for k in ("batch_size=8",)],
        "intermediate.max_steps=6",
        "intermediate.save_steps=2",
        "prediction.max_steps=6",
        "prediction.save_steps=2",
        "prediction.eval_steps=3",
        "prediction.lr=1e-3",
        *extra,
    ]


def test_resume_path_resumes_its_own_stage(inputs, teacher, capsys):
    base = inputs["base"] / "td"
    whole = base / "whole"
    assert main(["task-distill", *td_args(inputs, teacher, whole)]) == 0
    expected = whole / "student/prediction/final"

    # A phase 1 path: phase 1 goes on from it, phase 2 behaves as resume=auto (starts afresh).
    one = base / "phase1"
    assert (
        main(["task-distill", *td_args(inputs, teacher, one, "distill.phases=[intermediate]")]) == 0
    )
    path = one / "student/intermediate/checkpoint-4"
    capsys.readouterr()
    assert main(["task-distill", *td_args(inputs, teacher, one), f"resume={path}"]) == 0
    said = capsys.readouterr().out
    assert f"resumed from {path} at step 4" in said
    assert_same_weights(expected, one / "student/prediction/final")

    # A phase 2 path: phase 1 is finished (skipped), phase 2 goes on from the path.
    two = base / "phase2"
    assert main(["task-distill", *td_args(inputs, teacher, two)]) == 0
    path = two / "student/prediction/checkpoint-4"
    capsys.readouterr()
    assert main(["task-distill", *td_args(inputs, teacher, two), f"resume={path}"]) == 0
    said = capsys.readouterr().out
    assert "distill phase 1 (intermediate): already finished" in said
    assert f"resumed from {path} at step 4" in said
    assert_same_weights(expected, two / "student/prediction/final")


def test_resume_path_of_no_stage_is_refused_before_any_work(inputs, teacher, tmp_path, capsys):
    out = tmp_path / "td"
    elsewhere = teacher  # finetune's final/, not a task-distill stage's
    assert main(["task-distill", *td_args(inputs, teacher, out), f"resume={elsewhere}"]) == 2
    one_error(capsys, str(elsewhere), str(out / "student/intermediate"), "student/prediction")
    assert not out.exists()
    # a folder of a stage that is no checkpoint: the stage's checkpoints are listed
    (out / "student/intermediate/junk").mkdir(parents=True)
    bad = out / "student/intermediate/junk"
    assert main(["task-distill", *td_args(inputs, teacher, out), f"resume={bad}"]) == 2
    one_error(capsys, f"resume={bad} is not a checkpoint")


# --------------------------------------------------------------------------- 3. settings


@pytest.fixture
def finished(inputs, tmp_path) -> tuple[list[str], Path]:
    """A finished 6-step fine-tuning (checkpoints 3 and 6, final at 6)."""
    args = ft_args(inputs, tmp_path / "out")
    assert main(["finetune", *args]) == 0
    return args, tmp_path / "out/teacher"


def snapshot(stage: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(stage)): p.read_bytes()
        for p in sorted(stage.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_changed_lr_is_refused_and_nothing_is_written(finished, capsys):
    args, stage = finished
    before = snapshot(stage)
    capsys.readouterr()
    assert main(["finetune", *args, "resume=auto", "finetune.lr=0.5"]) == 2
    one_error(capsys, "finetune.lr: saved 0.003, now 0.5", str(stage / "final"))
    assert snapshot(stage) == before  # config.yaml (seed, lr) still says what was used
    # ... also from a step checkpoint of an interrupted run
    shutil.rmtree(stage / "final")
    assert main(["finetune", *args, "resume=auto", "finetune.lr=0.5", "seed=1"]) == 2
    line = one_error(capsys, "finetune.lr: saved 0.003, now 0.5", "seed: saved 42, now 1")
    assert str(stage / "checkpoint-6") in line


def test_changed_training_data_is_refused(inputs, tmp_path, capsys):
    data = write_sst2(tmp_path / "SST-2")
    args = [a.replace(str(inputs["sst2"]), str(data)) for a in ft_args(inputs, tmp_path / "out")]
    assert main(["finetune", *args]) == 0
    stage = tmp_path / "out/teacher"
    shutil.rmtree(stage / "final")  # as if killed after step 6's checkpoint
    before = snapshot(stage)
    # the same folder and max_steps, its train.tsv rewritten: as many rows, other ones
    rows = ["sentence\tlabel"] + [f"{s}\t{y}" for s, y in sst2_rows(48, seed=7)]
    (data / "train.tsv").write_text("\n".join(rows) + "\n")
    capsys.readouterr()
    assert main(["finetune", *args, "resume=auto"]) == 2
    line = one_error(capsys, "training data: saved '48 rows, sha256 ", "now '48 rows, sha256 ")
    assert "task.data_dir" not in line and str(stage / "checkpoint-6") in line
    assert snapshot(stage) == before


def test_more_steps_continue_a_finished_stage(finished, capsys):
    args, stage = finished
    capsys.readouterr()
    assert main(["finetune", *args, "resume=auto", "finetune.max_steps=9"]) == 0
    said = capsys.readouterr().out
    assert f"resumed from {stage / 'final'} at step 6 (planned for 6 steps, now 9" in said
    assert ckpt.load_state(stage / "final")["position"]["step"] == 9
    log = read_jsonl(stage / "metrics.jsonl")
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 10))
    assert [r["step"] for r in log if r.get("done")] == [9]
    config = (stage / "config.yaml").read_text()
    assert config.startswith(f"# resumed from {stage / 'final'} at step 6\n")
    assert "max_steps: 9" in config
    # the same again: finished, skipped, config.yaml untouched
    stamp = (stage / "config.yaml").stat().st_mtime_ns
    assert main(["finetune", *args, "resume=auto", "finetune.max_steps=9"]) == 0
    assert "already finished" in capsys.readouterr().out
    assert (stage / "config.yaml").stat().st_mtime_ns == stamp
    # fewer steps than done: refused
    assert main(["finetune", *args, "resume=auto", "finetune.max_steps=4"]) == 2
    one_error(capsys, "at step 9, past this run's 4 steps (finetune.max_steps=4)")


def test_eval_steps_may_change_on_resume(finished, capsys):
    args, stage = finished
    shutil.rmtree(stage / "final")  # as if killed after step 6's checkpoint...
    shutil.rmtree(stage / "checkpoint-6")  # ...or rather after step 3's
    assert main(["finetune", *args, "resume=auto", "finetune.eval_steps=2"]) == 0
    evals = [r["step"] for r in read_jsonl(stage / "metrics.jsonl") if "eval" in r]
    assert evals == [3, 4, 6]  # 3 before the resume; then every 2 steps
    config = (stage / "config.yaml").read_text()
    assert "eval_steps: 2" in config and "resumed from" in config


# --------------------------------------------------------------------------- 4. divergence


def test_nan_loss_names_the_last_good_checkpoint(inputs, tmp_path, monkeypatch, capsys):
    real = objectives.SupervisedLoss.__call__
    calls = {"n": 0}

    def diverging(self, batch):
        calls["n"] += 1
        loss, parts = real(self, batch)
        return (loss * float("nan") if calls["n"] == 8 else loss), parts

    monkeypatch.setattr(objectives.SupervisedLoss, "__call__", diverging)
    out = tmp_path / "out"
    assert main(["finetune", *ft_args(inputs, out, "finetune.max_steps=12")]) == 2
    last = out / "teacher/checkpoint-6"
    line = one_error(
        capsys, "diverged at step 8: the loss became nan", "finetune.lr, now 0.003", str(last)
    )
    assert f"resume={last}" in line and "resume=auto" not in line
    assert [p.name for p in ckpt.step_checkpoints(out / "teacher")] == [
        "checkpoint-3",
        "checkpoint-6",
    ]


def test_nonfinite_weights_are_never_written(inputs, tmp_path, monkeypatch, capsys):
    real = Trainer._step

    def corrupting(self, group):
        stats = real(self, group)
        if self.pos.step == 6:  # right before step 6's evaluation (best/) and checkpoint
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("inf")
        return stats

    monkeypatch.setattr(Trainer, "_step", corrupting)
    out = tmp_path / "out"
    assert main(["finetune", *ft_args(inputs, out, "finetune.max_steps=12")]) == 2
    one_error(capsys, "the weights hold nan or inf", str(out / "teacher/checkpoint-3"))
    stage = out / "teacher"
    assert [p.name for p in ckpt.step_checkpoints(stage)] == ["checkpoint-3"]
    assert not (stage / "final").exists()
    for tensor in weights(stage / "best").values():
        assert torch.isfinite(tensor).all()


def test_a_learning_rate_of_1e3_leaves_no_absurd_weights(inputs, tmp_path, capsys):
    """The loss stays finite for a few steps while the weights explode: they are caught before
    best/ or a checkpoint is written."""
    out = tmp_path / "out"
    args = ft_args(inputs, out, "finetune.lr=1e3", "finetune.max_steps=30", "finetune.save_steps=2")
    assert main(["finetune", *args]) == 2
    one_error(capsys, "training diverged at step ", "finetune.lr, now 1000")
    stage = out / "teacher"
    written = [*ckpt.step_checkpoints(stage), *(stage / d for d in ("best", "final"))]
    for folder in (f for f in written if f.is_dir()):
        for tensor in weights(folder).values():
            assert tensor.abs().max() <= WEIGHT_LIMIT, folder


# --------------------------------------------------------------------------- 5. one process per folder


def test_a_fresh_run_into_a_used_folder_is_refused(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["finetune", *ft_args(inputs, out)]) == 0
    stage = out / "teacher"
    before = (stage / "metrics.jsonl").read_text()
    assert main(["finetune", *ft_args(inputs, out)]) == 2  # no resume: would mix two runs
    err = capsys.readouterr().err
    assert f"{stage} already holds a run" in err and "resume=auto" in err
    assert (stage / "metrics.jsonl").read_text() == before  # nothing appended
    assert main(["finetune", *ft_args(inputs, out), "resume=auto"]) == 0  # skipped: finished


def test_a_stage_folder_in_use_is_refused(inputs, tmp_path, capsys):
    stage = tmp_path / "out/teacher"
    stage.mkdir(parents=True)
    fd = os.open(stage / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another run holds it
        holder = {"pid": 4242, "host": "gpu-7", "since": "2024-05-01 10:00:00 +0000"}
        os.write(fd, json.dumps(holder).encode())
        args = ft_args(inputs, tmp_path / "out")
        assert main(["finetune", *args]) == 2
        one_error(
            capsys,
            f"{stage} is in use by process 4242 (host gpu-7) since 2024-05-01 10:00:00 +0000; "
            "wait for it or use another output_dir",
        )
        assert entries(stage) == {".lock"}  # no config.yaml, no metrics.jsonl
        # taken between the early check and the stage's start: refused as well
        free = tmp_path / "free"
        with (
            ckpt.stage_lock(free),
            pytest.raises(UserError, match="in use by"),
            ckpt.stage_lock(free),
        ):
            pass
    finally:
        os.close(fd)
    assert main(["finetune", *args]) == 0  # free again
    holder = json.loads((stage / ".lock").read_text())
    assert holder["pid"] == os.getpid()


def test_the_lock_is_released_after_an_error(inputs, tmp_path, monkeypatch, capsys):
    args = ft_args(inputs, tmp_path / "out")

    def broken(self, batch):
        raise RuntimeError("boom")

    monkeypatch.setattr(objectives.SupervisedLoss, "__call__", broken)
    with pytest.raises(RuntimeError):
        main(["finetune", *args])
    monkeypatch.undo()
    assert main(["finetune", *args]) == 0


# --------------------------------------------------------------------------- 6. metrics.jsonl


def test_metrics_rows_are_not_repeated_after_a_kill(finished, inputs):
    args, stage = finished
    original = read_jsonl(stage / "metrics.jsonl")
    # as if killed during step 6's checkpoint write, in the middle of a log line
    shutil.rmtree(stage / "final")
    shutil.rmtree(stage / "checkpoint-6")
    with (stage / "metrics.jsonl").open("a") as f:
        f.write('{"step": 7, "lo')
    assert main(["finetune", *args, "resume=auto"]) == 0
    log = read_jsonl(stage / "metrics.jsonl")
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in log if "eval" in r] == [3, 6]
    assert [r["step"] for r in log if r.get("done")] == [6]
    marker = log.index({"step": 3, "resumed_from": 3})
    assert [r["step"] for r in log[:marker]] == [1, 2, 3, 3]  # 3: its log row and eval
    # the resumed steps log what the uninterrupted run logged (timings aside)
    timing = {"examples_per_s", "tokens_per_s"}

    def same(rows):
        return [{k: v for k, v in r.items() if k not in timing} for r in rows]

    assert same([r for r in log if "resumed_from" not in r]) == same(original)


# --------------------------------------------------------------------------- 7. progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_plain_lines_without_a_terminal():
    stream = io.StringIO()
    progress = Progress(total=4, initial=1, desc="finetune", stream=stream, interval=0)
    for step in (2, 3, 4):
        progress.update(step, 0.5)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    assert lines[-1].startswith("finetune: step 4/4 (100%), loss 0.5000, ")
    assert "steps/s, ETA 0:00" in lines[-1]
    quiet = io.StringIO()  # the default interval: nothing within a few steps
    progress = Progress(total=4, initial=0, desc="finetune", stream=quiet)
    progress.update(1, 0.5)
    assert quiet.getvalue() == ""
    terminal = Terminal()  # a terminal keeps tqdm's bar
    progress = Progress(total=4, initial=0, desc="finetune", stream=terminal, interval=0)
    progress.update(1, 0.5)
    progress.close()
    assert "\r" in terminal.getvalue() and "steps/s, ETA" not in terminal.getvalue()


def test_training_off_a_terminal_logs_plain_progress(inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress_module, "PROGRESS_INTERVAL_S", 0.0)
    assert main(["finetune", *ft_args(inputs, tmp_path / "out", "finetune.max_steps=3")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    assert [line.split(",")[0] for line in err.splitlines() if ": step " in line] == [
        "finetune: step 1/3 (33%)",
        "finetune: step 2/3 (66%)",
        "finetune: step 3/3 (100%)",
    ]


# --------------------------------------------------------------------------- 8. another shape


def test_checkpoint_of_another_shape_is_one_clear_line(inputs, tmp_path, capsys):
    from tinybert.model import BertConfig, BertModel, save_model

    bert = tmp_path / "bert"
    shutil.copytree(inputs["bert"], bert)
    args = [a.replace(str(inputs["bert"]), str(bert)) for a in ft_args(inputs, tmp_path / "out")]
    assert main(["finetune", *args]) == 0
    stage = tmp_path / "out/teacher"
    shutil.rmtree(stage / "final")
    # the model folder now holds a narrower model (same path, same vocabulary)
    for item in bert.glob("*.safetensors"):
        item.unlink()
    n_vocab = len((bert / "vocab.txt").read_text().split())
    save_model(
        BertModel(BertConfig(vocab_size=n_vocab, **{**TINY, "hidden_size": 16})),
        bert,
        tokenizer_dir=bert,
    )
    capsys.readouterr()
    assert main(["finetune", *args, "resume=auto"]) == 2
    one_error(
        capsys,
        f"resume: {stage / 'checkpoint-6'} does not fit this run's model",
        "checkpoint [",
        "32], this run [",
    )
