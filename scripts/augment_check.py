"""Does data augmentation help a small task? The experiment of BENCHMARKS.md.

    python scripts/augment_check.py     # needs `make demo` first (its teacher and GD student)

A seeded 2,000-sentence sample of SST-2 train is distilled from the demo's teacher (MiniLM-L6
fine-tuned on 20,000 sentences) into students started three ways (random weights, the demo's
general-distilled TinyBERT-4L-312, and teacher layers 2/4/6), each without augmentation and with
`tinybert augment` (20 copies, p 0.4, k 15, GloVe neighbours only: no masked LM exists here).
Also the teacher fine-tuned on the same 2,000 sentences alone. Everything is scored on all 872
SST-2 dev sentences. Every stage runs with resume=auto; results in runs/augment/summary.json.
"""

from __future__ import annotations

import json
import random
import sys
import time

from _common import ROOT, SHARED, run_main, tinybert

RUN = ROOT / "runs" / "augment"
CONFIG = ["--config", "configs/augment-sst2.yaml"]
SAMPLE = 2000
INITS = {
    "random": ["student.init=random"],  # (the default, auto, would select the teacher's weights)
    "gd": ["student.init=checkpoint", f"student.path={ROOT / 'runs/demo/general/final'}"],
    "teacher_layers": ["student.init=teacher_layers", "student.teacher_layers=[2, 4, 6]"],
}
# Without augmentation 2,000 sentences are 63 steps an epoch: phase 1 and phase 2 run 10 epochs
# each (configs/augment-sst2.yaml). The augmented set (~40,000 rows) runs 1 epoch of each.
AUGMENTED_EPOCHS = ["intermediate.epochs=1", "prediction.epochs=1"]


def write_sample() -> None:
    """The first-line header and a seeded sample of SST-2 train, in its own TSV layout."""
    out = RUN / "data" / "train.tsv"
    if out.is_file():
        return
    lines = (SHARED / "data/glue/SST-2/train.tsv").read_text(encoding="utf-8").splitlines()
    rows = random.Random(42).sample(lines[1:], SAMPLE)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")


def evaluate(model: str, *extra: str) -> float:
    tinybert("evaluate", *CONFIG, *extra, f"--model={model}")
    return json.loads((ROOT / model / "eval_results.json").read_text())["accuracy"]


def main() -> None:
    if (
        not (ROOT / "runs/demo/teacher/best").is_dir()
        or not (ROOT / "runs/demo/general/final").is_dir()
    ):
        sys.exit("run `make demo` first: this uses its teacher and its general-distilled student")
    write_sample()
    sample, augmented = RUN / "data/train.tsv", RUN / "data/augmented/train.tsv"
    times: dict[str, float] = {}
    t0 = time.time()
    if not augmented.is_file():
        tinybert("augment", *CONFIG, f"task.train_file={sample}", f"augment.output={augmented}")
    times["augment"] = time.time() - t0
    summary: dict = {"sample": SAMPLE, "augmented_rows": sum(1 for _ in augmented.open()) - 1}
    t0 = time.time()
    teacher2k = RUN / "teacher-2k"
    tinybert("finetune", *CONFIG, f"task.train_file={sample}", f"output_dir={teacher2k}",
             "finetune.epochs=3", "resume=auto")  # fmt: skip
    times["teacher-2k"] = time.time() - t0
    summary["teacher (20k sentences, the demo's)"] = evaluate("runs/demo/teacher/best")
    summary["teacher (the 2k sample only)"] = evaluate(f"{teacher2k}/teacher/best")
    for init, init_args in INITS.items():
        for name, data, extra in (
            ("plain", sample, []),
            ("augmented", augmented, AUGMENTED_EPOCHS),
        ):
            out = RUN / f"{init}-{name}"
            t0 = time.time()
            tinybert("task-distill", *CONFIG, *init_args, *extra, f"task.train_file={data}",
                     f"output_dir={out}", "resume=auto")  # fmt: skip
            times[f"{init}-{name}"] = time.time() - t0
            summary[f"student {init}, {name}"] = evaluate(f"{out}/student/prediction/best")
    summary["minutes"] = {k: round(v / 60, 1) for k, v in times.items()}
    (RUN / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    run_main(__doc__, main)
