"""TD phase 1 with the teacher cache vs the live teacher (distill/teacher_cache.py), interleaved.

One process, one config (default configs/sst2-2k.yaml): the cache pass is timed, then the same
training batches (epoch 0's order, twice over) run as full steps (forward, loss, backward,
clipping, AdamW) alternately with the live teacher and with the cache, so a busy machine slows
both alike. Prints ms per step of each, their ratio, and a 10-epoch estimate (630 steps on the
2,000-row sample) for each precision named. End-to-end runs: BENCHMARKS "Phase 1 teacher cache".

    python bench/phase1_cache.py bf16 fp32
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tinybert.config import load_config
from tinybert.data.batching import batch_order
from tinybert.data.task_data import load_task_data, task_spec
from tinybert.distill import teacher_cache as tc
from tinybert.distill.objectives import intermediate_objective
from tinybert.distill.student import build_student, load_teacher, resolve_start
from tinybert.train.distributed import Dist
from tinybert.train.loop import TrainData
from tinybert.train.objective import Batch
from tinybert.train.optim import build_optimizer
from tinybert.train.precision import autocast

WARMUP = 4  # batches not timed


def measure(config: str, precision: str, folder: Path) -> str:
    cfg = load_config([config], [f"intermediate.precision={precision}"])
    task, device = task_spec(cfg.task), torch.device("cpu")
    teacher = load_teacher(cfg.teacher, task.head, "bench")
    start = resolve_start(cfg.student, teacher.config, cfg.teacher, cfg.distill.layer_map)
    torch.manual_seed(0)
    student = build_student(cfg.student, teacher, task.head, start=start, **task.head_args)
    data = load_task_data(cfg.task, cfg.teacher, cfg.seed, vocab_size=teacher.config.vocab_size)
    train, batch = TrainData.of_task(data), cfg.intermediate.batch_size
    plan = tc.CachePlan(folder, 100, {"bench": 1}, train, batch, device, precision, Dist())
    loss_fn, projection = intermediate_objective(cfg.distill, student, teacher, device, plan)
    t0 = time.perf_counter()
    loss_fn.prepare()
    build = time.perf_counter() - t0
    cache, params = loss_fn.cache, [p for m in (student, projection) for p in m.parameters()]
    optimizer = build_optimizer([student, projection], cfg.intermediate)
    lengths = np.asarray(train.lengths)
    order = batch_order(lengths, batch, shuffle=True, seed=1, epoch=0, group_by_length=True)
    times: dict[str, list[float]] = {"live": [], "cached": []}
    for n, indices in enumerate(order * 2):
        for mode in ("live", "cached") if n % 2 else ("cached", "live"):
            loss_fn.cache = cache if mode == "cached" else None
            t0 = time.perf_counter()
            with autocast(device, precision):
                loss, _ = loss_fn(Batch.from_rows(train.collate(indices)))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if n >= WARMUP:
                times[mode].append(time.perf_counter() - t0)
    live, cached = (float(np.mean(times[m])) for m in ("live", "cached"))
    steps = len(order) * 10
    return (
        f"{precision}: {len(times['live'])} steps each; live {live * 1e3:.1f} ms/step, cached "
        f"{cached * 1e3:.1f} ms/step ({live / cached:.2f}x); cache pass {build:.1f} s, "
        f"{tc.cache_size(cache.layout, lengths) / 1e9:.2f} GB; 10 epochs ({steps} steps): "
        f"live {steps * live:.0f} s, cached {build + steps * cached:.0f} s "
        f"({steps * live / (build + steps * cached):.2f}x)"
        if cache is not None
        else f"{precision}: no cache was built"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("precisions", nargs="*", default=["bf16"])
    parser.add_argument("--config", default="configs/sst2-2k.yaml")
    args = parser.parse_args()
    for precision in args.precisions:
        folder = Path(tempfile.mkdtemp(prefix="phase1-cache-"))
        try:
            print(measure(args.config, precision, folder), flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
