"""`tinybert run` end to end on tiny fixtures: finetune -> task-distill -> evaluate -> export ->
benchmark -> report; rerun skips; killed in the middle and rerun, the same result; and
`tinybert report` on the finished directory and on a half-finished copy."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from tinybert.cli import main
from tinybert.config import load_config
from tinybert.errors import TRIVIAL_STUDENT_EXIT, WEAK_TEACHER_EXIT, UserError
from tinybert.pipeline.commands import stage_table
from tinybert.pipeline.stages import plan

from .conftest import TINY, pausing_command, wait_until_paused, write_sst2
from .test_augment import vectors_for
from .test_report import parse

STAGES = "[finetune, task-distill, evaluate, export, benchmark, report]"


def run_args(out: Path, bert: Path, sst2: Path, stages: str = STAGES) -> list[str]:
    return [
        f"model={bert}",
        f"output_dir={out}",
        f"task.data_dir={sst2}",
        f"run.stages={stages}",
        "task.max_seq_length=16",
        "student.num_hidden_layers=1",
        "student.hidden_size=16",
        f"student.num_attention_heads={TINY['num_attention_heads']}",
        "student.intermediate_size=24",
        "finetune.epochs=8",
        "finetune.batch_size=8",
        "finetune.lr=3e-3",
        "finetune.eval_steps=24",
        "intermediate.epochs=30",
        "intermediate.batch_size=8",
        "intermediate.save_steps=10",
        "prediction.epochs=2",
        "prediction.batch_size=8",
        "prediction.lr=1e-3",
        "prediction.eval_steps=6",
        "benchmark.max_sentences=8",
        "benchmark.batch_sizes=[1, 4]",
        "benchmark.repeats=1",
        "card.base_model=prajjwal1/bert-tiny",
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def stages_of(out: Path) -> dict[str, dict]:
    return {s["name"]: s for s in json.loads((out / "run.json").read_text())["stages"]}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """One finished tiny run, shared by the tests that read it."""
    from .conftest import write_sst2, write_tiny_bert

    root = tmp_path_factory.mktemp("run")
    bert = write_tiny_bert(root / "bert")
    sst2 = write_sst2(root / "sst2")
    args = run_args(root / "out", bert, sst2)
    assert main(["run", *args]) == 0
    return root / "out", args


def test_run_writes_every_stage_wired_and_recorded(finished_run):
    out, _ = finished_run
    teacher, student = out / "teacher/best", out / "student/prediction/best"
    stages = stages_of(out)
    assert list(stages) == [
        "finetune", "task-distill", "evaluate", "export", "benchmark", "report"
    ]  # fmt: skip
    assert all(s["status"] == "done" and s["seconds"] > 0 for s in stages.values())
    # wiring: the teacher finetune kept is the one task-distill read, exports sit beside models
    assert f"teacher={teacher}" in stages["task-distill"]["command"]
    distill_cfg = (out / "student/prediction/config.yaml").read_text()
    assert f"teacher: {teacher}" in distill_cfg
    for model in (teacher, student):
        # evaluate's score of best/ is the dev score training kept it for
        done = next(r for r in read_jsonl(model.parent / "metrics.jsonl") if r.get("done"))
        accuracy = json.loads((model / "eval_results.json").read_text())["accuracy"]
        assert accuracy == pytest.approx(done["best_metric"], abs=1e-9)
        assert (model / "onnx/model_int8.onnx").is_file()
        speed = json.loads((model / "speed.json").read_text())
        assert {(r["backend"], r["precision"]) for r in speed["results"]} == {
            ("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")
        }  # fmt: skip
    assert (out / "report/report.html").is_file() and (out / "report/report.md").is_file()
    models = json.loads((out / "run.json").read_text())["models"]
    assert models["teacher"] == str(teacher) and models["student"] == str(student)
    # both learned the task: better than always answering the majority class (0.5 here)
    verdicts = json.loads((out / "run.json").read_text())["verdicts"]
    for role, model in (("teacher", teacher), ("student", student)):
        results = json.loads((model / "eval_results.json").read_text())
        assert results["baseline"] == {"accuracy": 0.5}
        assert results["verdict"]["trivial"] is False
        assert (
            verdicts[role]["trivial"] is False and verdicts[role]["source"] == "tinybert evaluate"
        )


def test_report_html_is_self_contained_and_holds_the_evaluated_numbers(finished_run):
    out, _ = finished_run
    page = parse(out / "report/report.html")
    assert page.images and page.links == [] and page.scripts == 0
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    for role, model in (("teacher", "teacher/best"), ("student", "student/prediction/best")):
        results = json.loads((out / model / "eval_results.json").read_text())
        assert page.table["metric:accuracy"][role] == results["accuracy"]
        assert page.table["metric:accuracy"]["baseline"] == results["baseline"]["accuracy"]
        speed = json.loads((out / model / "speed.json").read_text())["results"]
        row = next(r for r in speed if r["backend"] == "onnx" and r["precision"] == "int8")
        assert page.table[f"speed:onnx:int8:{row['batch_size']}"][role] == row["sequences_per_s"]


def test_every_saved_model_has_a_card_the_hub_reads(finished_run):
    from huggingface_hub import ModelCard

    out, _ = finished_run
    folders = sorted(p.parent for p in out.glob("**/final/config.json"))
    folders += sorted(p.parent for p in out.glob("**/best/config.json"))
    assert len(folders) == 5  # teacher best/final, phase 1 final, phase 2 best/final
    for folder in folders:
        card = ModelCard.load(folder / "README.md")
        assert "tinybert" in card.data.tags
        assert card.data.base_model == "prajjwal1/bert-tiny"
    for model in (out / "teacher/best", out / "student/prediction/best"):
        results = ModelCard.load(model / "README.md").data.eval_results
        accuracy = json.loads((model / "eval_results.json").read_text())["accuracy"]
        assert [r.metric_value for r in results if r.metric_type == "accuracy"] == [accuracy]


def test_rerun_skips_everything_and_changes_nothing(finished_run, capsys):
    out, args = finished_run
    before = {
        p: p.read_bytes() for p in out.glob("**/*") if p.is_file() and p.suffix != ".png"
        and p.parent.name != "report" and p.name not in ("run.json", "README.md", ".lock")
    }  # fmt: skip
    seconds = {k: v["seconds"] for k, v in stages_of(out).items()}
    assert main(["run", *args]) == 0
    stages = stages_of(out)
    assert {k: v["status"] for k, v in stages.items() if k != "report"} == {
        k: "skipped" for k in seconds if k != "report"
    }
    # a skipped stage keeps the time of the run that did its work
    assert all(stages[k]["seconds"] == seconds[k] for k in seconds if k != "report")
    after = {p: p.read_bytes() for p in before}
    assert after == before
    printed = capsys.readouterr()
    assert "already finished" in printed.out + printed.err
    # the last lines: the main metric against the baseline, and each model's verdict
    assert "dev accuracy: baseline 0.5000, teacher" in printed.out
    assert "kept over the baseline" in printed.out and "of the teacher's score" in printed.out
    assert "student: dev accuracy" in printed.out and "over the trivial baseline" in printed.out
    assert "FAILED" not in printed.out + printed.err


def test_changed_setting_of_a_finished_stage_is_reported(finished_run, tmp_path, capsys):
    out, args = finished_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    moved = [a.replace(str(out), str(copy)) for a in args]
    code = main(["run", *moved, "finetune.lr=1e-3"])
    err = capsys.readouterr().err
    assert code == 2 and "finetune.lr" in err and "saved 0.003, now 0.001" in err
    assert stages_of(copy)["finetune"]["status"] == "failed"


@pytest.mark.slow  # the whole run again in a child
def test_killed_run_continues_to_the_same_result(finished_run, tmp_path):
    out, args = finished_run
    other = tmp_path / "out"
    moved = [a.replace(str(out), str(other)) for a in args]
    cmd = [sys.executable, "-m", "tinybert", "run", *moved]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # SIGTERM at a known point: the child pauses right after writing phase 1's checkpoint-10
    # and says so on stderr; the signal ends the pause, and the loop stops at that step.
    mark = other / "student/intermediate/checkpoint-10"
    proc = subprocess.Popen(
        pausing_command(mark, "run", *moved),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        err = wait_until_paused(proc.stderr)
        proc.send_signal(signal.SIGTERM)
        err += proc.communicate(timeout=300)[1].decode()
    finally:
        if proc.poll() is None:
            proc.kill()  # a failing test leaves no child behind
    assert proc.returncode == 143, err  # stopped in phase 1, the step saved
    assert "stopped by SIGTERM at step 10 of" in err and str(mark) in err, err
    assert stages_of(other)["task-distill"]["status"] == "interrupted"
    assert stages_of(other)["finetune"]["status"] == "done"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout + done.stderr
    for model in ("teacher/best", "student/prediction/best"):
        want = load_file(out / model / "model.safetensors")
        got = load_file(other / model / "model.safetensors")
        assert want.keys() == got.keys()
        assert all((want[k] == got[k]).all() for k in want), model
        metrics = [json.loads((d / model / "eval_results.json").read_text()) for d in (out, other)]
        assert metrics[0]["accuracy"] == metrics[1]["accuracy"]


def test_report_rebuilds_from_files_alone(finished_run, tmp_path, capsys):
    out, _ = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "report")
    assert main(["report", str(copy)]) == 0
    assert (copy / "report/report.html").is_file()
    # half-finished: the student not evaluated yet, no run.json
    (copy / "student/prediction/best/eval_results.json").unlink()
    (copy / "run.json").unlink()
    assert main(["report", str(copy)]) == 0
    assert "eval_results.json" in capsys.readouterr().err


def test_plan_refuses_runs_that_cannot_work(tmp_path):
    def refused(*overrides: str) -> str:
        cfg = load_config([], list(overrides))
        with pytest.raises(UserError) as e:
            plan(cfg, [], list(overrides), stage_table())
        return str(e.value)

    assert "give model=" in refused("run.stages=[finetune, report]")
    assert "corpus.inputs" in refused("run.stages=[prepare-corpus, general-distill]", "model=x")
    assert "teacher=" in refused("run.stages=[task-distill, evaluate]", "teacher=")
    assert "add prediction" in refused(
        "run.stages=[task-distill, evaluate]", "teacher=t", "distill.phases=[intermediate]"
    )
    assert "student.init=teacher_layers" in refused(
        "run.stages=[general-distill, task-distill]",
        "model=m",
        "teacher=t",
        "corpus.path=c",
        "student.init=teacher_layers",
    )


def test_stage_order_is_checked_in_the_config(capsys):
    assert main(["show-config", "run.stages=[report, finetune]"]) == 2
    assert "in this order: prepare-corpus, general-distill" in capsys.readouterr().err


def test_a_section_keeps_its_own_defaults_when_a_file_sets_one_key():
    cfg = load_config([], ["general.lr=1e-4", "intermediate.lr=1e-4"])
    assert cfg.general.weight_decay == 1e-4 and cfg.general.group_by_length is False
    assert cfg.intermediate.epochs == 10


def test_augment_stage_feeds_task_distill(tmp_path, tiny_bert_dir, sst2_dir):
    """augment's output is the training file task-distill reads, and is made once."""
    texts = [line.split("\t")[0] for line in (sst2_dir / "train.tsv").read_text().splitlines()]
    glove = vectors_for(texts[1:], tmp_path / "glove.txt")
    out = tmp_path / "out"
    args = [
        *run_args(out, tiny_bert_dir, sst2_dir, "[finetune, augment, task-distill]"),
        f"augment.word_vectors={glove}",
        "augment.n=2",
        "intermediate.epochs=1",
        "finetune.epochs=1",
        # one epoch teaches nothing; this test is about augment's wiring, not the models
        "run.allow_weak_teacher=true",
        "run.allow_trivial=true",
    ]
    assert main(["run", *args]) == 0
    augmented = out / "augmented/train.tsv"
    rows = augmented.read_text().splitlines()
    assert len(rows) > len((sst2_dir / "train.tsv").read_text().splitlines())
    config = (out / "student/prediction/config.yaml").read_text()
    assert f"train_file: {augmented}" in config
    assert main(["run", *args]) == 0
    assert stages_of(out)["augment"]["status"] == "skipped"


def test_evaluate_rewrites_the_card_of_a_stage_model_only(finished_run, tmp_path, capsys):
    out, args = finished_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    student = copy / "student/prediction/best"
    (student / "README.md").unlink()
    loose = tmp_path / "loose"  # a model outside any stage folder, e.g. a downloaded one
    shutil.copytree(student, loose)
    config = [a for a in args if a.startswith(("task.", "model="))]
    assert main(["evaluate", *config, f"--model={student}"]) == 0
    assert "model-index" in (student / "README.md").read_text()
    assert main(["evaluate", *config, f"--model={loose}"]) == 0
    assert not (loose / "README.md").exists()


@pytest.mark.slow  # DDP, two processes
def test_run_under_torchrun_trains_in_parallel_and_works_once(tmp_path, tiny_bert_dir, sst2_dir):
    """Two gloo processes: training stages data-parallel, the others on the main process."""
    from .test_general import cli, finish

    out = tmp_path / "out"
    log = finish(cli("run", *run_args(out, tiny_bert_dir, sst2_dir), "device=cpu", torchrun=2))
    assert log.count("=== [4/6] export") == 1 and "tinybert run finished" in log
    assert {s["status"] for s in stages_of(out).values()} == {"done"}
    for model in ("teacher/best", "student/prediction/best"):
        assert (out / model / "speed.json").is_file() and (out / model / "README.md").is_file()


def one_class_dev(directory: Path) -> Path:
    """The SST-2 fixture with only its positive dev rows: always "1" scores 1.0 there, so no
    model can beat the trivial baseline (a cheap, certain way to a trivial model)."""
    sst2 = write_sst2(directory)
    rows = (sst2 / "dev.tsv").read_text().splitlines()
    (sst2 / "dev.tsv").write_text("\n".join([rows[0], *[r for r in rows if r.endswith("\t1")]]))
    return sst2


def test_trivial_models_stop_the_run_with_their_own_exit_codes(tmp_path, tiny_bert_dir, capsys):
    """A weak teacher stops the run before task-distill (exit 4); let through, the student is
    trivial too, and the run ends, report written, with exit 3; accepted, with 0."""
    out = tmp_path / "out"
    stages = "[finetune, task-distill, evaluate, report]"
    args = [
        *run_args(out, tiny_bert_dir, one_class_dev(tmp_path / "sst2"), stages),
        "finetune.epochs=1",
        "distill.phases=[prediction]",
        "prediction.epochs=1",
    ]
    assert main(["run", *args]) == WEAK_TEACHER_EXIT == 4
    printed = capsys.readouterr()
    assert "!!! FAILED: the teacher is no better than the trivial baseline" in printed.out
    assert "stopped before task-distill" in printed.err and "run.allow_weak_teacher" in printed.err
    record = json.loads((out / "run.json").read_text())
    assert record["verdicts"]["teacher"]["trivial"] is True
    assert record["verdicts"]["teacher"]["baseline"] == 1.0  # every dev row is "1"
    assert "metrics.jsonl, step" in record["verdicts"]["teacher"]["source"]
    assert "run.allow_weak_teacher" in record["stopped"]
    assert stages_of(out)["finetune"]["status"] == "done"
    assert stages_of(out)["task-distill"]["status"] == "pending" and not (out / "student").exists()

    weak_ok = [*args, "run.allow_weak_teacher=true"]
    assert main(["run", *weak_ok]) == TRIVIAL_STUDENT_EXIT == 3
    printed = capsys.readouterr()
    last = printed.out.rstrip().splitlines()[-1]
    assert last.startswith("!!! FAILED: the student is no better than the trivial baseline")
    assert "run.allow_trivial=true" in printed.err
    student = out / "student/prediction/best"
    assert json.loads((student / "eval_results.json").read_text())["verdict"]["trivial"] is True
    assert json.loads((out / "run.json").read_text())["verdicts"]["student"]["trivial"] is True
    assert {s["status"] for s in stages_of(out).values()} <= {"done", "skipped"}
    assert "**FAILED: The student is no better" in (out / "report/report.md").read_text()
    assert "It has not learned the task." in (student / "README.md").read_text()

    assert main(["run", *weak_ok, "run.allow_trivial=true"]) == 0
    printed = capsys.readouterr().out
    assert "!!! FAILED: the student" in printed and "exit status 0 all the same" in printed
