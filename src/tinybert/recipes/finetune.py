"""finetune: any Hugging Face BERT directory -> a teacher for one task.

<output_dir>/teacher/{best, final, checkpoint-N, metrics.jsonl}
"""

from __future__ import annotations

import torch

from tinybert.config import Config
from tinybert.data.task_data import load_training_data, task_spec
from tinybert.distill.objectives import SupervisedLoss
from tinybert.errors import UserError
from tinybert.model import load_any_model
from tinybert.recipes.common import (
    EVAL_KEYS,
    TASK_KEYS,
    dev_evaluation,
    report_new_weights,
    stage_settings,
)
from tinybert.train.context import stage_context
from tinybert.train.loop import TrainData, Trainer, TrainResult

STAGE = "teacher"


def run_finetune(cfg: Config) -> TrainResult:
    """Fine-tune `cfg.model` on the task; the best dev model is kept in teacher/best."""
    if not cfg.model:
        raise UserError("finetune needs model=<Hugging Face model directory>")
    task = task_spec(cfg.task)
    ctx = stage_context(cfg, tokenizer_dir=cfg.model)
    ctx.preflight([STAGE])
    # The model: a new head for the task's labels on the encoder in cfg.model.
    torch.manual_seed(cfg.seed)  # the new head's initial weights
    model, report = load_any_model(cfg.model, head=task.head, **task.head_args)
    report_new_weights(cfg.model, report)
    # The data, checked against the model before it is read.
    models = {f"model {cfg.model}": model.config}
    data = load_training_data(cfg.task, cfg.model, cfg.seed, models)
    # Train; the trainer saves best/, final/ and the checkpoints.
    model.to(ctx.device)
    trainer = Trainer(
        cfg.finetune,
        ctx,
        STAGE,
        model=model,
        loss_fn=SupervisedLoss(model, task.is_regression),
        data=TrainData.of_task(data),
        evaluation=dev_evaluation(
            model, data, cfg.finetune.eval_batch_size, ctx.device, cfg.task.metric
        ),
        desc="finetune",
        section="finetune",
        settings=stage_settings(cfg, "model", "seed", *TASK_KEYS, *EVAL_KEYS),
    )
    return trainer.fit()
