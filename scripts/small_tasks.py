"""Small tasks: does a 4L-312 student learn a task of a few thousand rows? BENCHMARKS.md's table.

    python scripts/small_tasks.py                    # every task, the default variants
    python scripts/small_tasks.py sick-e qnli-small  # some tasks
    python scripts/small_tasks.py --quick sick-e --variants random,gd   # as BENCHMARKS.md ran it

Tasks (each a shipped config): SICK entailment and relatedness (../shared/data/sick, train on
TRAIN, best/ on TRIAL, scored on TEST), a 4,000/1,463 split of the real QNLI dev set
(scripts/qnli_split.py), and a 2,000-sentence sample of SST-2 train scored on all of SST-2 dev.

The "auto" variant is the shipped config as a user runs it: `tinybert run --config C`, every
stage (--quick: no export, no benchmark), the teacher fine-tuned first. The "gd" variant needs
`make demo`'s general-distilled student; the aug4 variants add `tinybert augment` (4 GloVe
copies a row) and were not run for BENCHMARKS.md. The others reuse that teacher and run task-distill and
evaluate with overrides into runs/small/<task>/<variant>. Each row of runs/small/results.jsonl
has the command, wall time, the teacher's and the student's scores and the trivial baseline;
runs/small/results.md is the table. Rows of variants already in results.jsonl are kept: delete
the file (or a variant's line) to measure again.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT

from tinybert.config import load_config
from tinybert.report.files import kept_over_baseline

CONFIGS = {
    "sick-e": "configs/sick-e.yaml",
    "sick-r": "configs/sick-r.yaml",
    "qnli-small": "configs/qnli-small.yaml",
    "sst2-2k": "configs/sst2-2k.yaml",
}
GD_STUDENT = "runs/demo/general/final"  # `make demo`'s general-distilled TinyBERT-4L-312
_TEACHER_SHAPE = [  # a 4-layer student as wide as MiniLM-L6: teacher layers copy over exactly
    "student.hidden_size=384", "student.intermediate_size=1536", "student.num_attention_heads=12"
]  # fmt: skip
VARIANTS: dict[str, list[str]] = {
    "auto": [],  # the shipped config: student.init=auto, i.e. select from the teacher for 4L-312
    "random": ["student.init=random"],
    "gd": ["student.init=checkpoint", f"student.path={GD_STUDENT}"],
    "teacher-layers-4L-384": _TEACHER_SHAPE,  # auto: teacher layers [2, 3, 5, 6]
    "select-first": ["student.select_layers=first"],
    "no-phase1": ["distill.phases=[prediction]"],
    "random-no-phase1": ["student.init=random", "distill.phases=[prediction]"],
    "hard-label": ["distill.hard_label_weight=1.0"],
    "phase1-10ep": ["intermediate.epochs=10"],
    "aug4": ["augment.n=4"],
    "random-aug4": ["student.init=random", "augment.n=4"],
}
DEFAULT = ["auto", "random", "gd", "teacher-layers-4L-384"]
GLOVE = "../shared/data/glove/glove.6B.50d.100k.txt.gz"
OUT = ROOT / "runs" / "small"


QUICK_STAGES = ["run.stages=[finetune, task-distill, evaluate, report]"]


def command(task: str, variant: str, quick: bool = False) -> list[str]:
    """The `tinybert run` command line of one variant."""
    config = CONFIGS[task]
    if variant == "auto":  # --quick: without export and benchmark (they change no score)
        return ["run", "--config", config, *(QUICK_STAGES if quick else [])]
    stages = ["augment"] if "augment.n=4" in VARIANTS[variant] else []
    aug = [f"augment.word_vectors={GLOVE}"] if stages else []
    return [
        "run", "--config", config, f"run.stages=[{', '.join([*stages, 'task-distill', 'evaluate'])}]",
        f"teacher={_output_dir(task, 'auto')}/teacher/best",
        f"output_dir={_output_dir(task, variant)}", *aug, *VARIANTS[variant],
    ]  # fmt: skip


def _output_dir(task: str, variant: str) -> str:
    if variant == "auto":  # the shipped config's own output_dir
        return load_config([ROOT / CONFIGS[task]]).output_dir
    return str((OUT / task / variant).relative_to(ROOT))


def _scores(model: Path) -> dict:
    path = model / "eval_results.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def measure(task: str, variant: str, quick: bool) -> dict:
    """Run one variant (resuming what is there) and return its results row."""
    args = command(task, variant, quick)
    print(f"\n$ tinybert {shlex.join(args)}", flush=True)
    t0 = time.time()
    done = subprocess.run([sys.executable, "-m", "tinybert", *args], cwd=ROOT)
    out = ROOT / _output_dir(task, variant)
    return {
        "task": task,
        "variant": variant,
        "command": "tinybert " + shlex.join(args),
        "exit_code": done.returncode,
        "wall_s": round(time.time() - t0, 1),
        "teacher": _scores(ROOT / _output_dir(task, "auto") / "teacher" / "best"),
        "student": _scores(out / "student" / "prediction" / "best"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("tasks", nargs="*", help=f"of {', '.join(CONFIGS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="auto: no export, no benchmark")
    parser.add_argument("--variants", default=",".join(DEFAULT), help=f"of {', '.join(VARIANTS)}")
    opts = parser.parse_args()
    variants = opts.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS] + [
        t for t in opts.tasks if t not in CONFIGS
    ]
    if unknown:
        parser.error(
            f"unknown {unknown}; tasks: {', '.join(CONFIGS)}; variants: {', '.join(VARIANTS)}"
        )
    if "qnli-small" in opts.tasks and not (ROOT / "runs/qnli-split/train.tsv").is_file():
        subprocess.run([sys.executable, "scripts/qnli_split.py"], cwd=ROOT, check=True)
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / "results.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    seen = {(r["task"], r["variant"]) for r in rows}
    for task in opts.tasks or list(CONFIGS):
        for variant in ["auto", *[v for v in variants if v != "auto"]]:
            if (task, variant) in seen:
                continue
            if variant == "gd" and not (ROOT / GD_STUDENT).is_dir():
                print(f"skipping {task} gd: {GD_STUDENT} not found (run `make demo` first)")
                continue
            row = measure(task, variant, opts.quick)
            rows.append(row)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
    (OUT / "results.md").write_text(table(rows))
    print(table(rows))


def table(rows: list[dict]) -> str:
    """One line per task and variant: main test metric of teacher, baseline and student."""
    lines = [
        "| task | variant | baseline | teacher | student | kept over baseline | wall | exit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        key = _main_key(r["task"], r["student"] or r["teacher"])
        base = (r["student"] or r["teacher"]).get("baseline", {}).get(key)
        t, s = r["teacher"].get(key), r["student"].get(key)
        kept = kept_over_baseline(t, s, base) if None not in (t, s, base) else None
        cells = [_f(base), _f(t), _f(s), "-" if kept is None else f"{100 * kept:.0f}%"]
        lines.append(
            f"| {r['task']} | {r['variant']} | {' | '.join(cells)} | "
            f"{r['wall_s'] / 60:.1f} min | {r['exit_code']} |"
        )
    return "\n".join(lines) + "\n"


def _main_key(task: str, scores: dict) -> str:
    """The score reported: the test split where there is one (SICK), else the dev split's."""
    metric = "pearson" if task == "sick-r" else "accuracy"
    return f"test/{metric}" if f"test/{metric}" in scores else metric


def _f(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


if __name__ == "__main__":
    main()
