"""Real-data check of the Chinese tasks: TNEWS and CLUENER through init-model, finetune,
task-distill and evaluate, on the real CLUE files in ../shared.

    python scripts/clue_check.py            # both tasks; results in runs/clue/summary.json

No pre-trained Chinese BERT can be had here, so the teacher is a randomly initialised 6L-384 BERT
with the bert-base-chinese vocabulary, trained on each task alone; the student is
TinyBERT-4L-312 distilled from it (both phases). Every stage runs with resume=auto, and in
bf16 where this CPU runs it faster (`precision: auto` in configs/demo-clue.yaml).
"""

from __future__ import annotations

import json
import sys
import time

from _common import ROOT, SHARED, run_main, tinybert

RUN = ROOT / "runs" / "clue"
BASE = RUN / "bert-6l-384-zh"
# Bounded for 2 CPU cores: a TNEWS sample, fewer epochs than the task configs.
TASKS = {
    "tnews": ["task.max_train_examples=20000", "finetune.epochs=2", "finetune.eval_steps=500"],
    "cluener": ["finetune.epochs=6", "finetune.eval_steps=300", "prediction.epochs=3"],
}


def main() -> None:
    vocab = SHARED / "data/vocab/bert-base-chinese-vocab.txt"
    if not vocab.is_file():
        sys.exit(f"needs the real inputs in {SHARED}")
    if not (BASE / "config.json").is_file():
        tinybert(
            "init-model",
            "--config",
            "configs/models/bert-6l-384.yaml",
            f"--vocab={vocab}",
            f"--output={BASE}",
        )
    summary = {}
    for task, extra in TASKS.items():
        out = RUN / task
        common = ["--config", f"configs/{task}.yaml", "--config", "configs/demo-clue.yaml"]
        common += [f"output_dir={out}", f"teacher={out / 'teacher/best'}", "resume=auto", *extra]
        t0 = time.time()
        tinybert("finetune", *common)
        tinybert("task-distill", *common)
        scores = {}
        for name, model in (
            ("teacher", out / "teacher/best"),
            ("student", out / "student/prediction/best"),
        ):
            tinybert("evaluate", *common, f"--model={model}")
            scores[name] = json.loads((model / "eval_results.json").read_text())
        scores["minutes"] = (time.time() - t0) / 60
        summary[task] = scores
    (RUN / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    run_main(__doc__, main)
