"""Run the planned stages in order: banner, skip or run, record, refresh the model cards.

A run never flatters: a teacher finetune leaves no better than the dev set's trivial baseline
stops the run before task-distill (exit status 4, unless run.allow_weak_teacher), and a final
student no better than it ends the run, report written, with exit status 3 (unless
run.allow_trivial). Both verdicts go into run.json ("verdicts") and the run's last lines.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tinybert.config import Config, load_config
from tinybert.errors import (
    TRIVIAL_STUDENT_EXIT,
    WEAK_TEACHER_EXIT,
    Interrupted,
    NoBetterThanBaseline,
    UserError,
)
from tinybert.paths import check_output_dir
from tinybert.pipeline.estimate import Clock, stage_costs
from tinybert.pipeline.record import PipelineRecord
from tinybert.pipeline.stages import finished_marks, mtimes, plan, stage_config, up_to_date
from tinybert.pipeline.verdict import Judgement, judge_model
from tinybert.pipeline.wiring import RunStage, Stage, Wiring
from tinybert.report.card import write_cards
from tinybert.report.collect import collect_run, common_speed, speed_label
from tinybert.report.files import kept_over_baseline, score_ratio
from tinybert.train import distributed
from tinybert.train.distributed import Dist


def run_stages(
    configs: Sequence[str], overrides: Sequence[str], table: Mapping[str, RunStage]
) -> PipelineRecord:
    """`tinybert run` (commands.run_pipeline): every stage of `run.stages`, wired, each as
    `table` (the registry's stage table) defines it; returns the run's record."""
    configs, overrides = list(configs), list(overrides)
    cfg = load_config(configs, overrides)
    stages = plan(cfg, configs, overrides, table)
    check_output_dir(Path(cfg.output_dir), "output_dir")
    w = Wiring.of(cfg)
    dist, _ = distributed.setup(cfg.device)
    record = PipelineRecord.start(w, configs, overrides, cfg.task.name, stages)
    if dist.is_main:
        record.write()
    clock = Clock(stage_costs(stages, cfg, w))
    start = time.time()
    for i, stage in enumerate(stages):
        stage_cfg = stage_config(configs, overrides, stage)
        if dist.is_main:
            tqdm.write(_banner(i, stages, table, time.time() - start, clock, stage_cfg, w))
        t0 = time.time()
        previous = dict(record.stage(stage.name))  # what an earlier run recorded
        if dist.is_main:  # a run killed outright (SIGKILL, power) shows where it was
            record.stage(stage.name)["status"] = "running"
            record.write()
        try:
            status = _run_stage(stage, table[stage.name], stage_cfg, w, previous, dist)
        except (Interrupted, KeyboardInterrupt):
            _end(record, stage, "interrupted", time.time() - t0, w, dist)
            raise
        except UserError:
            _end(record, stage, "failed", time.time() - t0, w, dist)
            raise
        seconds = time.time() - t0
        clock.done(stage.name, seconds, worked=status == "done")
        if status == "done" and previous.get("status") == "interrupted":
            seconds += previous.get("seconds") or 0.0  # the stage's time before it stopped
        _end(record, stage, status, seconds, w, dist)
        if stage.name == "finetune" and "task-distill" in cfg.run.stages:
            _check_teacher(stage_cfg, w, record, dist)
    judged = _judge_end(cfg, w, record, dist)
    if dist.is_main:
        tqdm.write(_closing(w, time.time() - start, judged, cfg.run.allow_trivial))
    student = next((j for j in judged if j.role == "student"), None)
    if dist.gather(bool(student and student.trivial))[0] and not cfg.run.allow_trivial:
        raise NoBetterThanBaseline(
            f"the student {w.student} is no better than the trivial baseline of the dev set "
            "(see above); its report is written. Set run.allow_trivial=true to accept it",
            TRIVIAL_STUDENT_EXIT,
        )
    return record


def _keep_verdict(record: PipelineRecord, found: Judgement) -> None:
    record.data.setdefault("verdicts", {})[found.role] = found.record()
    record.write()


def _check_teacher(cfg: Config, w: Wiring, record: PipelineRecord, dist: Dist) -> None:
    """After finetune: stop before task-distill if the teacher it kept is no better than the
    trivial baseline (distilling it would only copy that), unless run.allow_weak_teacher."""
    found = judge_model(cfg, "teacher", w.teacher) if dist.is_main else None
    if found is not None:
        _keep_verdict(record, found)
        tqdm.write(found.line())
    if not dist.gather(bool(found and found.trivial))[0]:
        return
    if cfg.run.allow_weak_teacher:
        if dist.is_main:
            tqdm.write("run.allow_weak_teacher=true: distilling from it anyway")
        return
    message = (
        f"stopped before task-distill: the teacher {w.teacher} is no better than the trivial "
        "baseline of the dev set (see above). Train it better (finetune.epochs, finetune.lr, "
        "the data) in a new output_dir, or set run.allow_weak_teacher=true to distil it anyway"
    )
    if dist.is_main:
        record.data["stopped"] = message
        record.write()
    raise NoBetterThanBaseline(message, WEAK_TEACHER_EXIT)


def _judge_end(cfg: Config, w: Wiring, record: PipelineRecord, dist: Dist) -> list[Judgement]:
    """The verdicts on the run's teacher and student at its end (main process), when the run
    made or evaluated them and there is a dev score to judge by."""
    stages = set(cfg.run.stages)
    roles = []
    if stages & {"finetune", "evaluate"}:
        roles.append(("teacher", w.teacher))
    if stages & {"task-distill", "evaluate"}:
        roles.append(("student", w.student))
    judged = []
    for role, model in roles if dist.is_main else []:
        found = judge_model(cfg, role, model) if Path(model).is_dir() else None
        if found is not None:
            _keep_verdict(record, found)
            judged.append(found)
    return judged


def _end(
    record: PipelineRecord, stage: Stage, status: str, seconds: float, w: Wiring, dist: Dist
) -> None:
    if dist.is_main:
        record.finish(stage, status, seconds, w)
        write_cards(_model_dirs(w))


def _model_dirs(w: Wiring) -> list[Path]:
    """Every best/ and final/ this run wrote (never a teacher or base model from elsewhere)."""
    stage_dirs = [w.teacher_dir, w.general_dir, *w.student_dir.glob("*")]
    return [d / kind for d in stage_dirs for kind in ("best", "final") if (d / kind).is_dir()]


def _banner(
    i: int,
    stages: list[Stage],
    table: Mapping[str, RunStage],
    elapsed: float,
    clock: Clock,
    cfg: Config,
    w: Wiring,
) -> str:
    stage = stages[i]
    pending = [s.name for s in stages[i:] if not _looks_finished(s, table[s.name], cfg, w)]
    left = clock.left(pending)
    eta = (
        f"about {_minutes(left)} left"
        if left is not None
        else "time left: estimated once a stage has been timed"
    )
    return (
        f"=== [{i + 1}/{len(stages)}] {stage.name}: reads {', '.join(stage.reads) or '-'}; "
        f"writes {', '.join(stage.writes)} | {_minutes(elapsed)} elapsed, {eta}"
    )


def _looks_finished(stage: Stage, spec: RunStage, cfg: Config, w: Wiring) -> bool:
    marks = finished_marks(spec, cfg, w)
    if marks:
        return all(m.is_file() for m in marks)
    return bool(stage.outputs) and all(Path(o).is_file() for o in stage.outputs)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _run_stage(
    stage: Stage, spec: RunStage, cfg: Config, w: Wiring, previous: dict[str, Any], dist: Dist
) -> str:
    """Run one stage; "done" if it did work, "skipped" if it was already finished."""
    if spec.trains:  # always resume=auto: a finished stage is skipped by its resume, an
        # interrupted one continues, and changed settings are refused naming the keys
        marks = finished_marks(spec, cfg, w)
        before = mtimes(marks)
        spec.work(stage, dataclasses.replace(cfg, resume=cfg.resume or "auto"), w)
        return "skipped" if None not in before and mtimes(marks) == before else "done"
    skip = False
    if dist.is_main:
        skip = up_to_date(stage, spec, previous) or bool(spec.ready and spec.ready(stage, cfg, w))
        if skip:
            tqdm.write(f"{stage.name}: already done with these settings; skipping")
        else:
            spec.work(stage, cfg, w)
    flags = dist.gather(skip)  # the others wait while the main process works
    return "skipped" if flags[0] else "done"


def _closing(w: Wiring, seconds: float, judged: list[Judgement], allow_trivial: bool) -> str:
    """The run's last lines: teacher vs student (main dev metric against the trivial baseline,
    size, speed), read back from the files the stages wrote, as the report reads them; then
    each model's verdict, a failure last and loud."""
    lines = [f"=== tinybert run finished in {_minutes(seconds)}: {w.out}"]
    try:
        run = collect_run(w.out)
    except UserError:  # nothing to compare (e.g. a run of prepare-corpus alone)
        return "\n".join([*lines, *_verdict_lines(judged, allow_trivial)])
    t, s, key = run.teacher, run.student, run.main_metric
    if key and key in t.metrics and key in s.metrics:
        scores = _scores_line(t.metrics[key], s.metrics[key], run.baseline.get(key))
        lines.append(f"dev {key}: {scores}")
    if t.params and s.params:
        lines.append(f"parameters: teacher {t.params:,}, student {s.params:,} "
                     f"({t.params / s.params:.1f}x fewer)")  # fmt: skip
    speed = common_speed(t, s)
    if speed and t.speed and s.speed:
        rate_t, rate_s = t.speed.results[speed], s.speed.results[speed]
        lines.append(
            f"{speed_label(speed)}: teacher {rate_t:.0f}, student {rate_s:.0f} sequences/s "
            f"({rate_s / rate_t:.1f}x)"
        )
    report = w.out / "report" / "report.html"
    if report.is_file():
        lines.append(f"report: {report}")
    return "\n".join([*lines, *_verdict_lines(judged, allow_trivial)])


def _scores_line(teacher: float, student: float, baseline: float | None) -> str:
    """ "baseline 0.6838, teacher 0.8603, student 0.8137 (73.6% kept over the baseline; 94.6%
    of the teacher's score)"; the plain ratio alone without a baseline."""
    kept = None if baseline is None else kept_over_baseline(teacher, student, baseline)
    ratio = score_ratio(teacher, student)
    parts = [f"{100 * kept:.1f}% kept over the baseline"] if kept is not None else []
    if baseline is not None and kept is None:
        parts.append("the teacher gains nothing over the baseline: nothing to keep")
    parts += [f"{100 * ratio:.1f}% of the teacher's score"] if ratio is not None else []
    shown = f"baseline {baseline:.4f}, " if baseline is not None else ""
    shown += f"teacher {teacher:.4f}, student {student:.4f}"
    return shown + (f" ({'; '.join(parts)})" if parts else "")


def _verdict_lines(judged: list[Judgement], allow_trivial: bool) -> list[str]:
    """Each verdict, failures last; an accepted trivial student says it was accepted."""
    lines = [j.line() for j in judged if not j.trivial] + [j.line() for j in judged if j.trivial]
    if allow_trivial and any(j.trivial and j.role == "student" for j in judged):
        lines.append("run.allow_trivial=true: the run ends with exit status 0 all the same")
    return lines
