"""task-distill: a fine-tuned teacher -> a TinyBERT student for the same task.

Phase 1 (`intermediate`): attention scores, hidden states and embeddings on the task data.
Phase 2 (`prediction`): the teacher's logits (soft cross-entropy; MSE for regression),
evaluating on dev as it trains and keeping the best model. `distill.phases` picks which run.

    <output_dir>/student/intermediate/final -> <output_dir>/student/prediction/{best, final}

Phase 1 over more than one epoch caches the teacher's mapped outputs in
<output_dir>/student/intermediate/teacher_cache (within intermediate.teacher_cache_gb), removed
when the phase finishes; see distill/teacher_cache.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from tinybert.config import Config
from tinybert.data.task_data import TaskData, check_model, load_training_data, task_spec
from tinybert.distill.mapping import resolve_layer_map
from tinybert.distill.objectives import PredictionLoss, intermediate_objective, teacher_logits
from tinybert.distill.student import (
    Start,
    bert_weights_refusal,
    build_student,
    load_teacher,
    resolve_start,
    teacher_record,
)
from tinybert.distill.teacher_cache import CachePlan, remove_cache
from tinybert.model import AnyBertModel, Teacher
from tinybert.recipes.common import (
    EVAL_KEYS,
    PHASE1_KEYS,
    TASK_KEYS,
    dev_evaluation,
    stage_settings,
    start_settings,
    weights_digest,
)
from tinybert.train.context import StageContext, stage_context
from tinybert.train.inference import Logits
from tinybert.train.loop import TrainData, Trainer, TrainResult
from tinybert.train.precision import resolve_precision
from tinybert.train.resume import data_fingerprint

STAGE = "student"  # the folder in output_dir that holds both phases
INTERMEDIATE, PREDICTION = f"{STAGE}/intermediate", f"{STAGE}/prediction"
# Below this many training rows a random-init student is warned about (docs/guide/small-tasks.md).
SMALL_TASK_ROWS = 50_000


def run_task_distill(cfg: Config) -> dict[str, TrainResult]:
    """Phase 1 then phase 2, as `distill.phases` says; results by phase name.

    Top to bottom: where and on what it runs; the teacher; the task's data, checked against the
    teacher before it is read; the student, built from the teacher and checked the same way;
    each phase (its trainer saves final/, best/ and the checkpoints)."""
    task = task_spec(cfg.task)
    ctx = stage_context(cfg, tokenizer_dir=cfg.teacher)
    phases = {"intermediate": INTERMEDIATE, "prediction": PREDICTION}
    running = [stage for name, stage in phases.items() if name in cfg.distill.phases]
    # The phase that does not run must not be running elsewhere either: phase 2 alone into a
    # folder whose phase 1 another process is writing would train beside it, then collide.
    ctx.preflight(running, neighbours=[s for s in phases.values() if s not in running])
    teacher = load_teacher(cfg.teacher, task.head, "task-distill").to(ctx.device)
    models = {f"teacher {cfg.teacher}": teacher.config}
    data = load_training_data(cfg.task, cfg.teacher, cfg.seed, models)
    student, start = _student(cfg, ctx, teacher, data)
    results: dict[str, TrainResult] = {}
    if "intermediate" in cfg.distill.phases:
        results["intermediate"] = _intermediate(cfg, ctx, teacher, student, data, start)
    if "prediction" in cfg.distill.phases:
        results["prediction"] = _prediction(cfg, ctx, teacher, student, data, start)
    return results


def _student(
    cfg: Config, ctx: StageContext, teacher: Teacher, data: TaskData
) -> tuple[AnyBertModel, Start]:
    """The student built from the teacher as student.init says, checked against the task like
    the teacher (a checkpoint's positions may be fewer), on the device."""
    refusal = bert_weights_refusal(teacher)
    start = resolve_start(cfg.student, teacher.config, cfg.teacher, cfg.distill.layer_map, refusal)
    if ctx.dist.is_main:
        tqdm.write(f"teacher: {teacher_record(teacher)['text']}")
        tqdm.write(f"student: {start.describe()}")
    torch.manual_seed(cfg.seed)  # the student's initial weights
    task = data.task
    student = build_student(cfg.student, teacher, task.head, start=start, **task.head_args)
    check_model(cfg.task, student.config, "student")
    _warn_small_task(ctx, start, len(data.train_set()))
    return student.to(ctx.device), start


def _warn_small_task(ctx: StageContext, start: Start, rows: int) -> None:
    if ctx.dist.is_main and start.init == "random" and rows < SMALL_TASK_ROWS:
        tqdm.write(
            f"warning: a student from random weights rarely learns a task of "
            f"{rows:,} rows (on 4k-row pair tasks it stayed near the trivial "
            "baseline, docs/guide/small-tasks.md); leave student.init at auto to start from the "
            "teacher's weights, or give a general-distilled student in student.path"
        )


def _intermediate(
    cfg: Config,
    ctx: StageContext,
    teacher: Teacher,
    student: AnyBertModel,
    data: TaskData,
    start: Start,
) -> TrainResult:
    train = TrainData.of_task(data)
    layer_map = resolve_layer_map(
        student.config.num_hidden_layers, teacher.config.num_hidden_layers, cfg.distill.layer_map
    )
    plan = _cache_plan(cfg, ctx, teacher, train, layer_map)
    loss_fn, projection = intermediate_objective(cfg.distill, student, teacher, ctx.device, plan)
    if ctx.dist.is_main:
        tqdm.write(
            f"phase 1: student layers 1..{len(loss_fn.layer_map)} <- teacher layers "
            f"{loss_fn.layer_map}"
        )
    trainer = Trainer(
        cfg.intermediate,
        ctx,
        INTERMEDIATE,
        model=student,
        extra=projection,
        loss_fn=loss_fn,
        data=train,
        desc="distill phase 1 (intermediate)",
        section="intermediate",
        settings={
            **stage_settings(cfg, "teacher", "seed", *TASK_KEYS, "student", *PHASE1_KEYS),
            "student start": start_settings(start),
        },
        init={**start.to_dict(), "teacher": teacher_record(teacher)},
    )
    result = trainer.fit()
    if ctx.dist.is_main:  # phase 1 is over (final/ written): nothing reads its cache again
        remove_cache(ctx.root / INTERMEDIATE)
    return result


def _cache_plan(
    cfg: Config, ctx: StageContext, teacher: nn.Module, train: TrainData, layer_map: list[int]
) -> CachePlan | None:
    """How phase 1 caches the teacher's outputs (distill/teacher_cache.py), or None (with a
    message saying why) when it computes them at every step."""
    phase, rows = cfg.intermediate, len(train.lengths)
    if phase.teacher_cache_gb == 0:
        return None
    seen = phase.max_steps * phase.batch_size * phase.grad_accum if phase.max_steps else None
    why = None
    if cfg.distill.loss_mode != "real_tokens":
        why = (
            f"distill.loss_mode={cfg.distill.loss_mode} averages over padded positions too, "
            "whose teacher outputs depend on how rows are batched"
        )
    elif (seen if seen is not None else phase.epochs * rows) <= rows:
        why = "phase 1 sees each training row at most once, so a cache would save nothing"
    if why is not None:
        if ctx.dist.is_main:
            tqdm.write(f"phase 1: no teacher cache: {why}; the teacher runs at every step")
        return None
    fingerprint = {
        "teacher": weights_digest(teacher),
        "data": data_fingerprint(np.asarray(train.lengths), train.collate, train.content),
        "layer_map": list(layer_map),
        "attention": cfg.distill.attention_weight > 0,
    }
    return CachePlan(
        folder=Path(ctx.root) / INTERMEDIATE,
        budget_gb=phase.teacher_cache_gb,
        fingerprint=fingerprint,
        data=train,
        # the rows of one training step per process: memory known to fit the teacher's scores
        batch_size=max(1, math.ceil(phase.batch_size / ctx.dist.world)),
        device=ctx.device,
        precision=resolve_precision(phase.precision, ctx.device),
        dist=ctx.dist,
    )


def _prediction(
    cfg: Config,
    ctx: StageContext,
    teacher: Teacher,
    student: nn.Module,
    data: TaskData,
    start: Start,
) -> TrainResult:
    train_cfg = cfg.prediction
    train = TrainData.of_task(data)
    precision = resolve_precision(train_cfg.precision, ctx.device)

    def logits() -> Logits:  # run before phase 2's first step: never when it already finished
        return teacher_logits(
            teacher, train, train_cfg.eval_batch_size, ctx.device, precision, ctx.dist
        )

    trainer = Trainer(
        train_cfg,
        ctx,
        PREDICTION,
        model=student,
        loss_fn=PredictionLoss(student, logits, cfg.distill, data.task.is_regression),
        data=train,
        evaluation=dev_evaluation(
            student, data, train_cfg.eval_batch_size, ctx.device, cfg.task.metric
        ),
        desc="distill phase 2 (prediction)",
        section="prediction",
        settings={
            **stage_settings(
                cfg,
                *("teacher", "seed", *TASK_KEYS, *EVAL_KEYS, "student"),
                *("distill.temperature", "distill.scale_by_t2", "distill.hard_label_weight"),
            ),
            # where phase 2 starts: phase 1's result (its settings, its length), or the
            # student as built when phase 1 does not run
            "student weights at the start of phase 2": weights_digest(student),
        },
        # the student's start before phase 1, and the teacher, for the model card
        init={**start.to_dict(), "teacher": teacher_record(teacher)},
    )
    return trainer.fit()
