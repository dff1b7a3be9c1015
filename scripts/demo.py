"""`make demo`: `tinybert run --config configs/demo.yaml` on the real inputs in ../shared.

1. the run: prepare-corpus, general-distill, finetune (the teacher), task-distill from the
   general-distilled student, evaluate, export (ONNX fp32, fused, int8), benchmark, report
   -> runs/demo/report/report.html, and a model card (README.md) beside every model
2. the baseline (configs/demo-random.yaml): the same task distillation from random weights
   -> runs/demo/random-init, to measure what general distillation adds

All that is left to this script is sizing: `precision: auto` picks bf16 where this CPU runs it
faster (AVX512-BF16, AMX); where it does not, training is ~2x slower, and general and task
distillation are shortened to keep the demo under ~25 min on 2 cores. Every stage resumes:
interrupt `make demo` and run it again to continue; delete runs/demo to start over.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _common import ROOT, SHARED, run_main, tinybert

RUN = ROOT / "runs" / "demo"


def training_precision() -> str:
    """What `precision: auto` resolves to here (the CPU's flags, else the cached probe), as the
    training commands resolve it."""
    from tinybert.train.distributed import resolve_device
    from tinybert.train.precision import resolve_precision

    return resolve_precision("auto", resolve_device("auto"))


def accuracy(model: Path, key: str = "accuracy") -> float:
    """`evaluate`'s dev accuracy of `model`; key="baseline": its dev set's trivial baseline."""
    results = json.loads((model / "eval_results.json").read_text())
    return results["baseline"]["accuracy"] if key == "baseline" else results[key]


def main() -> None:
    if not (SHARED / "data/glue/SST-2/train.tsv").is_file():
        sys.exit(f"make demo needs the real inputs in {SHARED} (see README: Real inputs)")
    precision = training_precision()
    print(f"training precision on this machine (precision: auto): {precision}", flush=True)
    size = []
    if precision == "fp32":  # no fast bf16 here: shorter GD and TD keep the demo's time
        size = ["general.max_steps=200", "task.max_train_examples=12000"]
    tinybert("run", "--config", "configs/demo.yaml", *size)
    tinybert("run", "--config", "configs/demo-random.yaml", *size)
    teacher = accuracy(RUN / "teacher/best")
    gd = accuracy(RUN / "student/prediction/best")
    random = accuracy(RUN / "random-init/student/prediction/best")
    base = accuracy(RUN / "student/prediction/best", "baseline")  # always the majority class
    kept = (gd - base) / (teacher - base)  # `tinybert run` stops on a teacher at the baseline
    print(
        f"\nSST-2 dev accuracy: majority-class baseline {base:.4f}; teacher {teacher:.4f}; "
        f"student from the general-distilled student {gd:.4f} ({100 * kept:.1f}% of the "
        f"teacher's gain over the baseline kept, {100 * gd / teacher:.1f}% of its score), from "
        f"random weights {random:.4f}: general distillation added {100 * (gd - random):+.2f} points"
    )
    print(f"report: {RUN / 'report/report.html'} (and report.md); model cards: */best/README.md")


if __name__ == "__main__":
    run_main(__doc__, main)
