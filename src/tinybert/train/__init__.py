"""tinybert.train: the one training loop and what it needs.

    loop.py         Trainer (fit, resume, skip finished stages), TrainData, Evaluation
    objective.py    the loop's contract with a stage: Batch in, Objective -> (loss, parts)
    context.py      StageContext (output folder, device, processes, resume), stage_context(cfg)
    checkpoint.py   atomic checkpoint folders, rotation
    optim.py        AdamW parameter groups, linear warm-up/decay
    distributed.py  torchrun process group, device choice
    precision.py    autocast, `precision: auto`
    inference.py    the batched inference loop and dev-set metrics

Nothing here knows about distillation: a stage is a model, an objective and data.
"""
