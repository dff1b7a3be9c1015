"""Run the planned stages in order: banner, skip or run, record, refresh the model cards.

A run never flatters: a teacher finetune leaves no better than the dev set's trivial baseline
stops the run before task-distill (exit status 4, unless run.allow_weak_teacher), and a final
student no better than it ends the run, report written, with exit status 3 (unless
run.allow_trivial). Both verdicts go into run.json ("verdicts") and the run's last lines.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from tinybert.config import RunConfig, load_run_config
from tinybert.errors import (
    TRIVIAL_STUDENT_EXIT,
    WEAK_TEACHER_EXIT,
    Interrupted,
    NoBetterThanBaseline,
    UserError,
)
from tinybert.paths import check_output_dir
from tinybert.pipeline.estimate import Clock, stage_costs
from tinybert.pipeline.record import RunRecord
from tinybert.pipeline.stages import (
    Stage,
    Wiring,
    finished_marks,
    mtimes,
    plan,
    stage_config,
    up_to_date,
)
from tinybert.pipeline.verdict import Judgement, judge_model
from tinybert.report import build_report
from tinybert.report.card import write_cards
from tinybert.report.collect import collect_run, common_speed, speed_label
from tinybert.report.files import is_trivial, kept_over_baseline, score_ratio, trivial_sentence
from tinybert.train import distributed
from tinybert.train.distributed import Dist


def run_pipeline(configs: Sequence[str], overrides: Sequence[str]) -> RunRecord:
    """`tinybert run`: every stage of `run.stages`, wired; returns the run's record."""
    configs, overrides = list(configs), list(overrides)
    cfg = load_run_config(configs, overrides)
    stages = plan(cfg, configs, overrides)
    check_output_dir(Path(cfg.output_dir), "output_dir")
    w = Wiring.of(cfg)
    dist, _ = distributed.setup(cfg.device)
    record = RunRecord.start(w, configs, overrides, cfg.task.name, stages)
    if dist.is_main:
        record.write()
    clock = Clock(stage_costs(stages, cfg, w))
    start = time.time()
    for i, stage in enumerate(stages):
        stage_cfg = stage_config(configs, overrides, stage)
        if dist.is_main:
            tqdm.write(_banner(i, stages, time.time() - start, clock, stage_cfg, w))
        t0 = time.time()
        previous = dict(record.stage(stage.name))  # what an earlier run recorded
        if dist.is_main:  # a run killed outright (SIGKILL, power) shows where it was
            record.stage(stage.name)["status"] = "running"
            record.write()
        try:
            status = _run_stage(stage, stage_cfg, w, previous, dist)
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


def _keep_verdict(record: RunRecord, found: Judgement) -> None:
    record.data.setdefault("verdicts", {})[found.role] = found.record()
    record.write()


def _check_teacher(cfg: RunConfig, w: Wiring, record: RunRecord, dist: Dist) -> None:
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


def _judge_end(cfg: RunConfig, w: Wiring, record: RunRecord, dist: Dist) -> list[Judgement]:
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


def _end(record: RunRecord, stage: Stage, status: str, seconds: float, w: Wiring, dist: Dist):
    if dist.is_main:
        record.finish(stage, status, seconds, w)
        write_cards(_model_dirs(w))


def _model_dirs(w: Wiring) -> list[Path]:
    """Every best/ and final/ this run wrote (never a teacher or base model from elsewhere)."""
    stage_dirs = [w.out / "teacher", w.out / "general", *(w.out / "student").glob("*")]
    return [d / kind for d in stage_dirs for kind in ("best", "final") if (d / kind).is_dir()]


def _banner(i: int, stages: list[Stage], elapsed: float, clock: Clock, cfg: RunConfig, w: Wiring):
    stage = stages[i]
    pending = [s.name for s in stages[i:] if not _looks_finished(s, cfg, w)]
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


def _looks_finished(stage: Stage, cfg: RunConfig, w: Wiring) -> bool:
    marks = finished_marks(stage, cfg, w)
    if marks:
        return all(m.is_file() for m in marks)
    return bool(stage.outputs) and all(Path(o).is_file() for o in stage.outputs)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _run_stage(stage: Stage, cfg: RunConfig, w: Wiring, previous: dict, dist: Dist) -> str:
    """Run one stage; "done" if it did work, "skipped" if it was already finished."""
    if stage.trains:
        marks = finished_marks(stage, cfg, w)
        before = mtimes(marks)
        _train(stage.name, cfg)
        return "skipped" if None not in before and mtimes(marks) == before else "done"
    skip = False
    if dist.is_main:
        skip = up_to_date(stage, previous) or _corpus_ready(stage, cfg, w)
        if skip:
            tqdm.write(f"{stage.name}: already done with these settings; skipping")
        else:
            _work(stage.name, cfg, w)
    flags = dist.gather(skip)  # the others wait while the main process works
    return "skipped" if flags[0] else "done"


def _train(name: str, cfg: RunConfig) -> None:
    """A training stage, always with resume=auto: a finished stage is skipped by the loop, an
    interrupted one continues, and changed settings are refused naming the keys."""
    if name == "finetune":
        from tinybert.recipes.finetune import run_finetune

        run_finetune(_with_resume(cfg))
    elif name == "general-distill":
        from tinybert.recipes.general_distill import run_general_distill

        run_general_distill(_with_resume(cfg))
    else:
        from tinybert.recipes.task_distill import run_task_distill

        run_task_distill(_with_resume(cfg))


def _with_resume(cfg: RunConfig) -> RunConfig:
    return dataclasses.replace(cfg, resume=cfg.resume or "auto")


def _corpus_ready(stage: Stage, cfg: RunConfig, w: Wiring) -> bool:
    """prepare-corpus: a corpus already in corpus.path, made from the same inputs at the same
    length, is used as it is; one made otherwise is refused (never silently replaced)."""
    meta_path = Path(w.corpus) / "meta.json"
    if stage.name != "prepare-corpus" or not meta_path.is_file():
        return False
    from tinybert.data.corpus import expand_inputs

    meta = json.loads(meta_path.read_text())
    sources = [str(Path(p).resolve()) for p in expand_inputs(list(cfg.corpus.inputs))]
    if meta.get("max_seq_length") != cfg.corpus.max_seq_length or meta.get("sources") != sources:
        raise UserError(
            f"{w.corpus} holds a corpus made from other inputs or at another length "
            f"(max_seq_length {meta.get('max_seq_length')}, now {cfg.corpus.max_seq_length}); "
            "remove it, or set corpus.path to a new folder"
        )
    return True


def _work(name: str, cfg: RunConfig, w: Wiring) -> None:
    """The non-training stages, on the main process."""
    if name == "prepare-corpus":
        from tinybert.data.corpus import PackingOptions, prepare_corpus

        check_output_dir(Path(w.corpus), "corpus.path")
        options = PackingOptions(max_seq_length=cfg.corpus.max_seq_length)
        stats = prepare_corpus(list(cfg.corpus.inputs), w.gd_teacher, w.corpus, options)
        tqdm.write(f"prepare-corpus: {stats.sequences} sequences -> {w.corpus}")
    elif name == "augment":
        from tinybert.recipes.augment import run_augment

        result = run_augment(cfg)
        tqdm.write("\n".join(result.summary.lines()))
    elif name == "report":
        built = build_report(w.out)
        tqdm.write(f"report: {built.md} and {built.html}")
        for line in built.missing:
            tqdm.write(f"  missing: {line}")
    else:
        for role, model in (("teacher", w.teacher), ("student", w.student)):
            if not Path(model).is_dir():
                fix = (
                    "give teacher=<a fine-tuned model>, or add finetune to run.stages"
                    if role == "teacher"
                    else "add task-distill to run.stages"
                )
                raise UserError(f"{name}: no {role} at {model}; {fix}")
            _per_model(name, cfg, model, role)


def _per_model(name: str, cfg: RunConfig, model: str, role: str) -> None:
    if name == "evaluate":
        from tinybert.evaluate import default_output, run_evaluate, write_results

        results = run_evaluate(cfg, model)
        write_results(results, default_output(model))
        shown = {k: v for k, v in results.items() if isinstance(v, float)}
        tqdm.write(f"evaluate {model}: " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
        verdict = results.get("verdict") or {}
        if is_trivial(verdict):
            tqdm.write(f"  !!! {trivial_sentence(role, verdict)}")
    elif name == "export":
        from tinybert.export.onnx import export_for_task

        exported = export_for_task(model, Path(model) / "onnx", cfg, optimize=True, int8=True)
        tqdm.write("\n".join(exported.summary()))
    else:
        from tinybert.speed import SpeedOptions, run_benchmark, summary_lines

        speed, path = run_benchmark(cfg, model, SpeedOptions.from_config(cfg.benchmark))
        tqdm.write("\n".join([f"benchmark {model} -> {path}", *summary_lines(speed)]))


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
