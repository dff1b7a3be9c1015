"""`tinybert benchmark`: inference speed of a saved model on this machine, measured on the task's
own dev sentences, with PyTorch fp32 and bf16 and (when the model has an export) ONNX Runtime
fp32 and int8, and which of them is fastest at each batch size (export/recommend.py reads that
back for `tinybert predict --backend fastest` and `tinybert export`).

    result, path = run_benchmark(cfg, "runs/sst2/student/prediction/best")  # -> DIR/speed.json
    result = measure_speed(cfg, DIR, SpeedOptions(batch_sizes=(1, 32), max_sentences=256))

torch bf16 is measured where the CPU runs bf16 natively (AVX512-BF16 or AMX; elsewhere it is
emulated and ~10x slower, so not worth the wait), as bf16 weights under inference mode: faster
here than fp32 weights under autocast, which converts every weight again on every call.

The sentences are the first `max_sentences` rows of the first dev split, in file order,
tokenised with the model's tokenizer exactly as evaluation does. They are batched as `predict`
and `evaluate` batch them (sorted by length, each batch padded to its own longest row), so the
figures are what those commands get. Only forward passes are timed: batches are built first.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from tinybert.config import BenchmarkConfig, Config
from tinybert.data.batching import collate
from tinybert.data.task_data import check_labels, check_length, load_task_data, task_spec
from tinybert.data.tokenization import TaskDataset
from tinybert.errors import UserError
from tinybert.export.recommend import SPEED_FILE, fastest_rows, int8_accuracy, int8_sentence
from tinybert.export.runtime import INT8_FILE, OnnxLogits, export_dir, find_onnx
from tinybert.model import BertForMaskedLM, Teacher, any_saved_head, load_any_model
from tinybert.paths import write_atomic
from tinybert.train.inference import Inputs, LogitsFn, bf16_logits_fn, torch_logits_fn
from tinybert.train.precision import resolve_precision

__all__ = ["SPEED_FILE", "SpeedOptions", "measure_speed", "run_benchmark", "summary_lines"]
# The ISA extensions that decide CPU inference speed (fp32 SIMD width, bf16 / AMX matrix units).
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
_WARMUP_BATCHES = 3  # untimed passes first: allocator, ORT's kernel choice, oneDNN primitives
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class SpeedOptions:
    """What `measure_speed` times: each batch size on the first `max_sentences` dev rows, the
    best of `repeats` full passes; `threads` CPU threads for PyTorch and ONNX Runtime (None:
    each library's default); `bf16` times torch bf16 too (None: where the CPU runs bf16
    natively, as `precision: auto` decides)."""

    batch_sizes: tuple[int, ...] = (1, 32)
    max_sentences: int = 256
    repeats: int = 2
    threads: int | None = None
    bf16: bool | None = None

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UserError(f"benchmark.batch_sizes: need sizes >= 1, got {list(self.batch_sizes)}")
        if self.max_sentences < 1:
            raise UserError(f"benchmark.max_sentences: need >= 1, got {self.max_sentences}")
        if self.repeats < 1:
            raise UserError(f"benchmark.repeats: need >= 1, got {self.repeats}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"benchmark.threads: need >= 1 or null, got {self.threads}")

    @classmethod
    def from_config(cls, bench: BenchmarkConfig) -> SpeedOptions:
        """The options a config's `benchmark:` section sets."""
        return cls(tuple(bench.batch_sizes), bench.max_sentences, bench.repeats, bench.threads)


def run_benchmark(
    cfg: Config,
    model_dir: str | Path,
    options: SpeedOptions = SpeedOptions(),
    on_row: Callable[[dict], object] | None = None,
) -> tuple[dict, Path]:
    """measure_speed, written to `model_dir`/speed.json (atomically: a reader never sees half a
    file). Returns (the result, its path)."""
    result = measure_speed(cfg, model_dir, options, on_row)
    path = Path(model_dir) / SPEED_FILE
    try:
        write_atomic(path, json.dumps(result, indent=2) + "\n")
    except OSError as e:  # e.g. a read-only copy of a model
        raise UserError(f"{path}: cannot write the benchmark result ({e.strerror})") from None
    return result, path


def measure_speed(
    cfg: Config,
    model_dir: str | Path,
    options: SpeedOptions = SpeedOptions(),
    on_row: Callable[[dict], object] | None = None,
) -> dict:
    """Sequences/s of `model_dir` per backend, precision and batch size (speed.json's content).

    Rows: torch fp32 always, torch bf16 (see SpeedOptions.bf16); onnx fp32 (the optimised
    graph when there is one) and int8 when the model's export folder (DIR/onnx) holds them.
    `on_row(row)` is called after each row. "fastest": the quickest row per batch size;
    "int8_accuracy": int8's dev-metric change from the export's export.json (or None).
    """
    model_dir = Path(model_dir)
    model = _load_torch(cfg, model_dir)
    vocab_size = model.config.vocab_size
    dataset, pad_id = _dev_sentences(cfg, model_dir, vocab_size, options.max_sentences)
    batches = {b: _batches(dataset, pad_id, b) for b in options.batch_sizes}
    previous = torch.get_num_threads()
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        threads = torch.get_num_threads()
        rows = _measure_backends(model, model_dir, batches, len(dataset), options, on_row)
    finally:
        torch.set_num_threads(previous)  # a caller's later work keeps its own setting
    return {
        "model": str(model_dir),
        "task": task_spec(cfg.task).name,
        "machine": machine_description(),
        "threads": threads,
        "sequences": len(dataset),
        "max_seq_length": cfg.task.max_seq_length,
        "mean_tokens": round(sum(dataset.lengths) / len(dataset), 2),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "results": rows,
        "fastest": fastest_rows(rows),
        "int8_accuracy": int8_accuracy(export_dir(model_dir)),
    }


def _load_torch(cfg: Config, model_dir: Path) -> Teacher:
    """The saved model (a student, or a teacher of any supported family) in eval mode on CPU;
    refused without a trained head (as evaluate does)."""
    model, report = load_any_model(model_dir, head=any_saved_head(model_dir))
    assert not isinstance(model, BertForMaskedLM)  # a task head was asked for
    if report.initialised:
        raise UserError(
            f"{model_dir} has no trained task head ({', '.join(report.initialised)}); "
            "benchmark a fine-tuned or distilled model"
        )
    check_labels(model.config, task_spec(cfg.task), str(model_dir))
    check_length(cfg.task.max_seq_length, model.config.max_position_embeddings)
    return model.eval()


def _dev_sentences(
    cfg: Config, model_dir: Path, vocab_size: int, max_sentences: int
) -> tuple[TaskDataset, int]:
    """The first `max_sentences` rows of the first dev split, tokenised as evaluation does, and
    the tokenizer's pad id."""
    # max_eval_examples takes the first rows in file order, so only those are tokenised.
    task_cfg = dataclasses.replace(cfg.task, max_eval_examples=max_sentences)
    data = load_task_data(task_cfg, model_dir, cfg.seed, False, vocab_size, quiet=True)
    name, dataset = next(iter(data.dev.items()))
    if len(dataset) == 0:
        raise UserError(f"{task_cfg.data_dir}: dev split '{name}' has no rows to time")
    return dataset, data.pad_id


def _batches(dataset: TaskDataset, pad_id: int, batch_size: int) -> list[Inputs]:
    """The dataset as predict/evaluate batch it: sorted by length (shortest first), cut into
    `batch_size` rows, each batch (B, T) padded to its own longest row (T <= max_seq_length)."""
    order = sorted(range(len(dataset)), key=dataset.lengths.__getitem__)
    batches = []
    for start in range(0, len(order), batch_size):
        batch = collate([dataset[i] for i in order[start : start + batch_size]], pad_id=pad_id)
        batches.append({k: batch[k] for k in _INPUTS})
    return batches


def _measure_backends(
    model: torch.nn.Module,
    model_dir: Path,
    batches: dict[int, list[Inputs]],
    n: int,
    options: SpeedOptions,
    on_row: Callable[[dict], object] | None,
) -> list[dict]:
    """One row per (backend, precision, batch size): torch fp32 (and bf16), then ONNX fp32
    and int8."""
    runs: list[tuple[str, str, Path | None]] = [("torch", "fp32", None)]
    bf16 = options.bf16
    if bf16 is None:  # as training's `auto` decides: from the CPU's flags
        bf16 = resolve_precision("auto", torch.device("cpu")) == "bf16"
    if bf16:
        runs.append(("torch", "bf16", None))
    folder = export_dir(model_dir)
    if folder is not None:
        runs.append(("onnx", "fp32", find_onnx(folder, "fp32")))
        if (folder / INT8_FILE).is_file():
            runs.append(("onnx", "int8", folder / INT8_FILE))
    rows = []
    for backend, precision, path in runs:
        fn = _logits_fn(model, precision, path, options.threads)
        for size in options.batch_sizes:
            speed = sequences_per_second(fn, batches[size], n, options.repeats)
            row = {
                "backend": backend,
                "precision": precision,
                "batch_size": size,
                "sequences_per_s": round(speed, 2),
                "file": None if path is None else _relative(path, model_dir),
            }
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def _logits_fn(
    model: torch.nn.Module, precision: str, path: Path | None, threads: int | None
) -> LogitsFn:
    """The run to time: an ONNX file, or the model in fp32 or bf16."""
    if path is not None:
        return OnnxLogits(path, threads)
    if precision == "bf16":  # a bf16 copy: the fp32 model stays as loaded
        return bf16_logits_fn(copy.deepcopy(model))
    return torch_logits_fn(model)


@torch.inference_mode()
def sequences_per_second(fn: LogitsFn, batches: Sequence[Inputs], n: int, repeats: int) -> float:
    """The best of `repeats` timed passes of `fn` over `batches` (n sequences in all), after an
    untimed warm-up on the longest few batches (they size the buffers every later batch reuses).
    """
    for batch in batches[-_WARMUP_BATCHES:]:
        fn(batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            fn(batch)
        best = min(best, time.perf_counter() - start)
    return n / max(best, 1e-9)  # a coarse clock on a tiny model must not divide by zero


def _relative(path: Path, model_dir: Path) -> str:
    try:
        return path.relative_to(model_dir).as_posix()
    except ValueError:  # the model dir is the export folder itself
        return path.as_posix()


def machine_description() -> str:
    """One line: CPU model, cores this process may use, and the notable ISA extensions, e.g.
    "Intel(R) Xeon(R) Processor, 2 cores, avx2 avx512f avx512_bf16 amx_bf16"."""
    name, flags = _cpuinfo()
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    parts = [name, f"{_cores()} cores"]
    present = [f for f in ISA_FLAGS if f in flags]
    if present:
        parts.append(" ".join(present))
    return ", ".join(parts)


def _cores() -> int:
    # The CPUs this process may run on (a container or taskset limits them), not the host's.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; ("", set()) where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux
        return "", set()
    name, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return name, flags


def summary_lines(result: dict) -> list[str]:
    """speed.json as short lines for the console: one per row, the fastest per batch size
    (with int8's accuracy change), then the machine."""
    lines = [
        f"{r['backend']:>5} {r['precision']:<4} batch {r['batch_size']:>3}: "
        f"{r['sequences_per_s']:9.1f} sequences/s" + (f"  ({r['file']})" if r["file"] else "")
        for r in result["results"]
    ]
    int8 = result.get("int8_accuracy")
    for best in result.get("fastest", []):
        ratio = best["vs_torch_fp32"]
        lines.append(
            f"fastest at batch {best['batch_size']}: {best['backend']} {best['precision']} "
            f"({best['sequences_per_s']:.1f} sequences/s"
            + (f", {ratio:.2f}x torch fp32)" if ratio else ")")
        )
    if int8 is not None:
        lines.append(int8_sentence(int8) + f" ({int8['fp32']:.4f} -> {int8['int8']:.4f})")
    lines.append(
        f"{result['sequences']} dev sentences of {result['task']} (mean {result['mean_tokens']} "
        f"tokens), {result['threads']} threads on {result['machine']}"
    )
    return lines
