"""`make demo`: the whole job end to end on real inputs from ../shared.

1. fine-tune all-MiniLM-L6-v2 on a 20k sample of SST-2 train -> the teacher
2. prepare-corpus: pack ../shared/data/corpus (100 MB of Wikipedia) into 64-token sequences
3. general-distill: the pre-trained MiniLM teaches a random 4-layer student, for a few minutes
4. task-distil the teacher twice into 4-layer students (phase 1 intermediate layers, phase 2
   predictions): from random weights, and from the general-distilled student
5. evaluate the teacher and both students on the full SST-2 dev set (872 sentences)
6. compare the sizes and the inference speed of teacher and student

Every stage runs with resume=auto: interrupt it and run `make demo` again to continue; delete
runs/demo to start over. The numbers are printed and written to runs/demo/summary.json.
Where this CPU runs bf16 faster than fp32 (AVX512-BF16, AMX), training uses bf16 autocast: the
demo configs say `precision: auto`, which measures that once and caches the answer.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from _common import ROOT, SHARED, tinybert

CONFIG = "configs/demo-sst2.yaml"
GD_CONFIG = "configs/demo-general.yaml"
RUN = ROOT / "runs" / "demo"
CORPUS = SHARED / "data/corpus/enwiki-100MB.txt"
TEACHER_BASE = SHARED / "models/all-MiniLM-L6-v2"


def measure(model_dir: Path, precision: str, repeats: int = 2) -> float:
    """Sequences/s of a forward pass over the full SST-2 dev set, batch 32, padded per batch."""
    import torch

    from tinybert.config import TaskConfig
    from tinybert.data.task_data import load_task_data
    from tinybert.model import load_model
    from tinybert.train.precision import autocast

    model, _ = load_model(model_dir)
    model.eval()
    cfg = TaskConfig(name="sst2", data_dir=str(SHARED / "data/glue/SST-2"), max_seq_length=64)
    data = load_task_data(cfg, str(model_dir), seed=0, train=False)
    dev = data.dev["dev"]
    collate = data.collate_fn(dev)
    batches = [collate(list(range(i, min(i + 32, len(dev))))) for i in range(0, len(dev), 32)]
    device = torch.device("cpu")
    best = 0.0
    with torch.inference_mode(), autocast(device, precision):
        for b in batches[:3]:  # warm-up
            model(b["input_ids"], b["attention_mask"], b["token_type_ids"])
        for _ in range(repeats):
            t0 = time.perf_counter()
            for b in batches:
                model(b["input_ids"], b["attention_mask"], b["token_type_ids"])
            best = max(best, len(dev) / (time.perf_counter() - t0))
    return best


def training_precision() -> str:
    """What `precision: auto` in the demo configs resolves to here (the same cached probe the
    training commands read): it sizes the demo, and is reported in the summary."""
    from tinybert.train.distributed import resolve_device
    from tinybert.train.precision import resolve_precision

    return resolve_precision("auto", resolve_device("auto"))


def n_params(model_dir: Path) -> int:
    from tinybert.model import load_model

    model, _ = load_model(model_dir)
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    if not (SHARED / "data/glue/SST-2/train.tsv").is_file():
        sys.exit(f"make demo needs the real inputs in {SHARED} (see README: Real inputs)")
    precision = training_precision()
    print(f"training precision on this machine (precision: auto): {precision}", flush=True)
    # fp32 CPUs (no fast bf16) train ~2x slower: a smaller GD and TD keep the demo < 20 min.
    gd_size = ["general.max_steps=200"] if precision == "fp32" else []
    td_size = ["task.max_train_examples=12000"] if precision == "fp32" else []
    minutes: dict[str, float] = {}
    start = time.time()

    def stage(name: str, *args: str) -> None:
        t0 = time.time()
        tinybert(*args)
        minutes[name] = (time.time() - t0) / 60

    stage("finetune", "finetune", "--config", CONFIG, "resume=auto")
    corpus = RUN / "corpus"
    if not (corpus / "meta.json").is_file():
        stage(
            "prepare_corpus",
            "prepare-corpus",
            str(CORPUS),
            f"--tokenizer={TEACHER_BASE}",
            f"--output={corpus}",
            "--max-seq-length=64",
        )
    stage(
        "general_distill",
        "general-distill",
        "--config",
        GD_CONFIG,
        "resume=auto",
        *gd_size,
    )
    gd_student = RUN / "general" / "final"
    runs = {"random": RUN / "td-random", "gd": RUN / "td-gd"}
    init = {"random": [], "gd": ["student.init=checkpoint", f"student.path={gd_student}"]}
    for name, out in runs.items():
        stage(
            f"task_distill_{name}",
            "task-distill",
            "--config",
            CONFIG,
            f"output_dir={out}",
            "resume=auto",
            *init[name],
            *td_size,
        )

    teacher = RUN / "teacher" / "best"
    models = {
        "teacher": teacher,
        **{f"student_{n}": d / "student/prediction/best" for n, d in runs.items()},
    }
    for model in models.values():
        tinybert("evaluate", "--config", CONFIG, f"--model={model}")
    acc = {
        name: json.loads((d / "eval_results.json").read_text())["accuracy"]
        for name, d in models.items()
    }
    size = {"teacher": n_params(teacher), "student": n_params(models["student_gd"])}
    speed = {
        n: measure(models[k], "fp32")
        for n, k in (("teacher", "teacher"), ("student", "student_gd"))
    }
    best = max(acc["student_random"], acc["student_gd"])
    summary = {
        "sst2_dev_accuracy": acc,
        "parameters": size,
        "size_ratio_teacher_over_student": size["teacher"] / size["student"],
        "dev_sequences_per_s_fp32": speed,
        "speedup_fp32": speed["student"] / speed["teacher"],
        "accuracy_kept": {
            "random_init": acc["student_random"] / acc["teacher"],
            "gd_init": acc["student_gd"] / acc["teacher"],
        },
        "training_precision": precision,
        "minutes": {**minutes, "total": (time.time() - start) / 60},
    }
    (RUN / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    line = "=" * 24
    print(f"\n{line} tinybert demo: SST-2 dev (872 sentences) {line}")
    print(f"teacher  MiniLM-L6-H384, fine-tuned        : accuracy {acc['teacher']:.4f}")
    print(f"student  4L-312, TD from random weights    : accuracy {acc['student_random']:.4f}")
    print(f"student  4L-312, TD from the GD student    : accuracy {acc['student_gd']:.4f}")
    print(
        f"general distillation changed student accuracy by "
        f"{100 * (acc['student_gd'] - acc['student_random']):+.2f} points; the better student "
        f"keeps {100 * best / acc['teacher']:.1f}% of the teacher's accuracy"
    )
    print(
        f"parameters: teacher {size['teacher'] / 1e6:.1f}M, student {size['student'] / 1e6:.1f}M "
        f"({summary['size_ratio_teacher_over_student']:.2f}x fewer); inference on the dev set "
        f"(fp32, batch 32, this CPU): student {summary['speedup_fp32']:.2f}x faster"
    )
    print(f"wall time: {summary['minutes']['total']:.1f} min; summary in {RUN / 'summary.json'}")


if __name__ == "__main__":
    import argparse

    # No options: --help prints what the script does (it would otherwise start the run).
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    main()
