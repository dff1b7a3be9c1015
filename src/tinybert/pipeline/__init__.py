"""`tinybert run`: from a teacher to a deployable, documented student in one command.

    run_pipeline(["configs/demo.yaml"], ["task.max_train_examples=2000"])

Every command, and each stage of `tinybert run`, is one entry of the registry (commands.py):
its options (arguments.py), what it does alone and in a run (actions.py), and for a stage
where it reads and writes (wiring.py: the teacher finetune keeps is the teacher task-distill
reads, the student task-distill keeps is the one export writes). The runner (runner.py) runs
`run.stages` in order with one banner line each and an estimate of the time left
(estimate.py), skips what is already finished (stages.py), and records it all in
<output_dir>/run.json (record.py), which `tinybert report` reads.

Importing this package imports no torch (`tinybert --help` reads the registry); `run_pipeline`
imports the runner when first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tinybert.pipeline.commands import run_pipeline

__all__ = ["run_pipeline"]


def __getattr__(name: str) -> Any:
    if name == "run_pipeline":
        from tinybert.pipeline.commands import run_pipeline

        return run_pipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
