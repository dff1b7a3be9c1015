"""`tinybert run`: from a teacher to a deployable, documented student in one command.

    run_pipeline(["configs/demo.yaml"], ["task.max_train_examples=2000"])

`run.stages` names the stages; each is the same code as its own command (finetune, task-distill,
evaluate, ...). This package only plans where each stage reads and writes (stages.py: the teacher
finetune keeps is the teacher task-distill reads, the student task-distill keeps is the one
export writes), runs them in order with one banner line each and an estimate of the time left
(estimate.py), skips what is already finished, and records it all in <output_dir>/run.json
(record.py), which `tinybert report` reads.
"""

from tinybert.pipeline.runner import run_pipeline

__all__ = ["run_pipeline"]
