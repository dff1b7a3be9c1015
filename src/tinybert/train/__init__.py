"""tinybert.train: the one training loop and what it needs.

    loop.py         Trainer (fit, resume, skip finished stages), RunContext, TrainData, Evaluation
    checkpoint.py   atomic checkpoint folders, rotation
    optim.py        AdamW parameter groups, linear warm-up/decay
    distributed.py  torchrun process group, device choice
    precision.py    autocast, `precision: auto`
    inference.py    the batched inference loop and dev-set metrics

Nothing here knows about distillation: a stage is a model, a loss function and data.
"""
