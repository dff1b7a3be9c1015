"""Serving speed of a trained sequence classifier: this tinybert's graphs against an earlier export.

Two changes make a sequence head faster to serve, and this script times each on its own:

    cls-only     the last layer computes the [CLS] row alone (the pooler reads nothing else):
                 in the exported graph and in the PyTorch model
    no-skipln    ONNX Runtime's SkipLayerNormalization fusion left out at load time (its CPU
                 kernel was slower than the Add + LayerNormalization it replaces)

The reference is an export made by an earlier tinybert (every layer computes every row), e.g.

    git worktree add /tmp/old e99918c && (cd /tmp/old && make setup && \\
        .venv/bin/tinybert export --config configs/sst2-2k.yaml --model STUDENT_COPY --int8)

and PyTorch's reference is the same model asked for its hidden states (which keeps every row of
the last layer). Rows timed, each on all of the task's dev sentences (first --max-sentences),
batched as `predict` batches them (sorted by length, padded per batch):

    onnx int8  reference export, SkipLayerNorm fused (what serving ran before) | no-skipln
    onnx int8  current export (cls-only), SkipLayerNorm fused | no-skipln (what ships)
    onnx fp32  reference model_optimized.onnx | current model_optimized.onnx (no SkipLayerNorm)
    torch fp32 / bf16: every row | cls-only

Each row runs in a process of its own (an idle ONNX Runtime session's or OpenMP's spinning
threads would slow the row being timed): a full untimed pass per batch size (every batch shape
once), then the best of --passes timed passes; rounds alternate the order of the rows. Reported: the best and median sentences/s over
rounds, and per batch size the median over rounds of each row's paired ratio to the first row.

    python bench/serving.py --config configs/sst2-2k.yaml --model STUDENT \\
        --reference /tmp/old-export/onnx --rounds 5
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from tinybert.benchmark import _batches, _dev_sentences, _load_torch, machine_description
from tinybert.config import load_config
from tinybert.export.runtime import INT8_FILE, OPTIMIZED_FILE, SLOW_FUSIONS, OnnxLogits
from tinybert.train.inference import Inputs

Runner = Callable[[Inputs], object]


def onnx_runner(path: Path, fuse_skipln: bool) -> Runner:
    """A session over `path`, with ONNX Runtime's SkipLayerNormalization fusion on or off."""
    if not fuse_skipln:
        return OnnxLogits(path)  # tinybert's runtime: SLOW_FUSIONS left out
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert "SkipLayerNormFusion" in SLOW_FUSIONS  # what the other variant leaves out

    def run(batch: Inputs) -> object:
        return session.run(["logits"], {n: np.asarray(batch[n]) for n in names})[0]

    return run


def torch_runner(model: torch.nn.Module, precision: str, cls_only: bool) -> Runner:
    """The model (a bf16 copy for bf16); every-row reference: hidden states asked for."""
    if precision == "bf16":
        model = copy.deepcopy(model).to(torch.bfloat16)

    def run(batch: Inputs) -> object:
        with torch.inference_mode():
            return model(
                batch["input_ids"],
                batch["attention_mask"],
                batch["token_type_ids"],
                output_hidden_states=not cls_only,
            ).logits

    return run


def variants(args, model: torch.nn.Module) -> dict[str, Callable[[], Runner]]:
    """Row name -> a maker of its runner (made afresh each round)."""
    ref, cur = Path(args.reference), Path(args.model) / "onnx"
    rows: dict[str, Callable[[], Runner]] = {
        "onnx int8 reference (fused SkipLN)": lambda: onnx_runner(ref / INT8_FILE, True),
        "onnx int8 reference, no-skipln": lambda: onnx_runner(ref / INT8_FILE, False),
        "onnx int8 cls-only (fused SkipLN)": lambda: onnx_runner(cur / INT8_FILE, True),
        "onnx int8 cls-only, no-skipln (ships)": lambda: onnx_runner(cur / INT8_FILE, False),
        "onnx fp32 reference optimized": lambda: onnx_runner(ref / OPTIMIZED_FILE, True),
        "onnx fp32 cls-only optimized (ships)": lambda: onnx_runner(cur / OPTIMIZED_FILE, False),
    }
    for precision in args.torch:
        rows[f"torch {precision} every row"] = lambda p=precision: torch_runner(model, p, False)
        rows[f"torch {precision} cls-only (ships)"] = lambda p=precision: torch_runner(
            model, p, True
        )
    return rows


def one_pass(run: Runner, batches: list[Inputs], n: int) -> float:
    start = time.perf_counter()
    for batch in batches:
        run(batch)
    return n / (time.perf_counter() - start)


def child(args) -> None:
    """One row in this process: a full warm-up pass per batch size (every batch shape once),
    then the best of --passes timed passes. Prints {batch size: sentences/s} as JSON."""
    cfg = load_config([args.config], [])
    model = _load_torch(cfg, Path(args.model))
    vocab = model.config.vocab_size
    dataset, pad_id = _dev_sentences(cfg, Path(args.model), vocab, args.max_sentences)
    run = variants(args, model)[args.child]()
    result = {}
    for size in args.batch_sizes:
        batches = _batches(dataset, pad_id, size)
        one_pass(run, batches, len(dataset))
        result[size] = max(one_pass(run, batches, len(dataset)) for _ in range(args.passes))
    print(json.dumps({"n": len(dataset), "speeds": result}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", required=True, help="a trained student with an export (onnx/)")
    parser.add_argument("--reference", required=True, help="an earlier export folder")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--max-sentences", type=int, default=872)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--torch", nargs="*", default=["fp32", "bf16"])
    parser.add_argument("--only", nargs="*", default=None, help="row names containing these")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    rows = list(variants(args, torch.nn.Identity()))
    if args.only:
        rows = [r for r in rows if any(o in r for o in args.only)]
    speeds: dict[tuple[str, int], list[float]] = {
        (r, b): [] for r in rows for b in args.batch_sizes
    }
    print(f"{machine_description()}; {torch.get_num_threads()} threads", flush=True)
    for rnd in range(args.rounds):
        for name in rows if rnd % 2 == 0 else reversed(rows):
            # Each row in a process of its own: no idle thread pool of another row spins beside it.
            cmd = [sys.executable, __file__, *sys.argv[1:], "--child", name]
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            for size, speed in out["speeds"].items():
                speeds[name, int(size)].append(speed)
        print(f"round {rnd + 1}/{args.rounds} done ({out['n']} sentences)", flush=True)
    report(rows, args.batch_sizes, speeds)


def report(rows, batches, speeds) -> None:
    first = next(iter(rows))
    print(f"\n| row | {' | '.join(f'batch {b}' for b in batches)} |")
    print(f"|---|{'---:|' * len(batches)}")
    for name in rows:
        cells = []
        for b in batches:
            got = speeds[name, b]
            ratio = statistics.median(g / f for g, f in zip(got, speeds[first, b], strict=True))
            cells.append(f"{max(got):,.1f} / {statistics.median(got):,.1f} ({ratio:.2f}x)")
        print(f"| {name} | {' | '.join(cells)} |")
    print("\ncells: best / median sentences/s over rounds (median paired ratio to the first row)")
    print(json.dumps({f"{k[0]} @ {k[1]}": [round(v, 1) for v in s] for k, s in speeds.items()}))


if __name__ == "__main__":
    main()
