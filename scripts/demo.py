"""`make demo`: the whole job end to end on real inputs from ../shared.

1. fine-tune all-MiniLM-L6-v2 on a 20k sample of SST-2 train -> the teacher
2. task-distil it into a 4-layer student (phase 1 intermediate layers, phase 2 predictions)
3. evaluate teacher and student on the full SST-2 dev set (872 sentences)
4. compare their size and inference speed

Every stage runs with resume=auto: interrupt it and run `make demo` again to continue; delete
runs/demo to start over. The numbers are printed and written to runs/demo/summary.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONFIG = "configs/demo-sst2.yaml"
RUN = ROOT / "runs" / "demo"


def tinybert(*args: str) -> None:
    print(f"\n$ tinybert {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "tinybert", *args], cwd=ROOT)
    if done.returncode:
        sys.exit(done.returncode)


def measure(model_dir: Path, precision: str, repeats: int = 2) -> float:
    """Sequences/s of a forward pass over the full SST-2 dev set, batch 32, padded per batch."""
    import torch

    from tinybert.config import TaskConfig
    from tinybert.distill.loop import autocast
    from tinybert.distill.recipes import load_task_data
    from tinybert.model import load_model

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


def n_params(model_dir: Path) -> int:
    from tinybert.model import load_model

    model, _ = load_model(model_dir)
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    if not (SHARED / "data/glue/SST-2/train.tsv").is_file():
        sys.exit(f"make demo needs the real inputs in {SHARED} (see README: Real inputs)")
    start = time.time()
    tinybert("finetune", "--config", CONFIG, "resume=auto")
    t_teacher = time.time() - start
    tinybert("task-distill", "--config", CONFIG, "resume=auto")
    t_student = time.time() - start - t_teacher
    teacher, student = RUN / "teacher" / "best", RUN / "student" / "prediction" / "best"
    for model in (teacher, student):
        tinybert("evaluate", "--config", CONFIG, f"--model={model}")
    acc = {
        name: json.loads((d / "eval_results.json").read_text())["accuracy"]
        for name, d in (("teacher", teacher), ("student", student))
    }
    size = {"teacher": n_params(teacher), "student": n_params(student)}
    # fp32 only: bf16 is ~8x slower than fp32 on CPUs without AMX (see BENCHMARKS.md);
    # bench/ measures both precisions.
    speed = {name: measure(d, "fp32") for name, d in (("teacher", teacher), ("student", student))}
    summary = {
        "sst2_dev_accuracy": acc,
        "parameters": size,
        "size_ratio_teacher_over_student": size["teacher"] / size["student"],
        "dev_sequences_per_s": speed,
        "speedup_fp32": speed["student"] / speed["teacher"],
        "accuracy_kept": acc["student"] / acc["teacher"],
        "minutes": {
            "finetune": t_teacher / 60,
            "task_distill": t_student / 60,
            "total": (time.time() - start) / 60,
        },
    }
    (RUN / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n==================== tinybert demo: SST-2 dev (872 sentences) ====================")
    print(
        f"teacher  MiniLM-L6-H384 fine-tuned : accuracy {acc['teacher']:.4f}  {size['teacher'] / 1e6:.1f}M params"
    )
    print(
        f"student  4-layer, task-distilled   : accuracy {acc['student']:.4f}  {size['student'] / 1e6:.1f}M params"
    )
    print(
        f"student keeps {100 * summary['accuracy_kept']:.1f}% of the teacher's accuracy; "
        f"{summary['size_ratio_teacher_over_student']:.2f}x fewer parameters"
    )
    print(
        f"inference speed-up (dev set, batch 32, 2 cores): fp32 {summary['speedup_fp32']:.2f}x, "
        f"bf16 {summary['speedup_bf16']:.2f}x"
    )
    print(f"wall time: {summary['minutes']['total']:.1f} min; summary in {RUN / 'summary.json'}")


if __name__ == "__main__":
    main()
