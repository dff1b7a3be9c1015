"""finetune: any Hugging Face BERT directory -> a teacher for one task.

<output_dir>/teacher/{best, final, checkpoint-N, metrics.jsonl}
"""

from __future__ import annotations

import torch

from tinybert.config import RunConfig
from tinybert.data.task_data import check_labels, check_metric, load_task_data, task_spec
from tinybert.distill.objectives import SupervisedLoss
from tinybert.errors import UserError
from tinybert.model import load_model
from tinybert.recipes.common import (
    EVAL_KEYS,
    TASK_KEYS,
    check_seq_length,
    dev_evaluation,
    report_new_weights,
    run_context,
    stage_settings,
    train_data,
)
from tinybert.train.loop import Trainer, TrainResult

STAGE = "teacher"


def run_finetune(cfg: RunConfig) -> TrainResult:
    """Fine-tune `cfg.model` on the task; the best dev model is kept in teacher/best."""
    if not cfg.model:
        raise UserError("finetune needs model=<Hugging Face BERT directory>")
    task = task_spec(cfg.task)
    check_metric(task, cfg.task.metric)
    ctx = run_context(cfg, tokenizer_dir=cfg.model)
    ctx.preflight([STAGE])
    torch.manual_seed(cfg.seed)  # the new head's initial weights
    model, report = load_model(cfg.model, head=task.head, **task.head_args)
    report_new_weights(cfg.model, report)
    check_labels(model.config, task, cfg.model)
    check_seq_length(cfg, model.config, f"model {cfg.model}")
    data = load_task_data(cfg.task, cfg.model, cfg.seed, vocab_size=model.config.vocab_size)
    model.to(ctx.device)
    trainer = Trainer(
        cfg.finetune,
        ctx,
        STAGE,
        model=model,
        loss_fn=SupervisedLoss(model, task.is_regression),
        data=train_data(data),
        evaluation=dev_evaluation(
            model, data, cfg.finetune.eval_batch_size, ctx.device, cfg.task.metric
        ),
        desc="finetune",
        section="finetune",
        settings=stage_settings(cfg, "model", "seed", *TASK_KEYS, *EVAL_KEYS),
    )
    return trainer.fit()
